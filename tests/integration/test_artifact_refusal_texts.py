"""What a reader without an operator token is shown when the artifact store did not give a version's
model back. A version refused on record (its artifact gone, or not the bytes registered), by an
operator's promote or by the monitor's rollback, had the store's own words in its decision's public
reason: "artifact of version 7 refused: cannot read s3://bucket/key: An error occurred (NoSuchKey)",
and its numbers named the URI; /v1/models named every version's. The reason now says what is wrong;
where and what the store said are logged, and kept in the decision's numbers for token holders. The
promote's 409 (token holders only) keeps to the reason too, a store that does not answer included."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import pytest
from sqlalchemy import delete
from sqlmodel import select

from fairvalue import lifecycle
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.decisions import record_decision
from storage.ingest import ensure_collection
from storage.registry import CHAMPION, PREVIOUS_CHAMPION, get_alias, set_alias
from storage.tables import ModelVersion, PromotionDecision
from tests.integration.test_lifecycle_races import aliases_and_decisions_restored, last_decision_id

pytestmark = pytest.mark.integration
BUCKET = "fairvalue-test"
DECISIONS = "/v1/collections/cryptopunks/decisions"
STATE = {"missing": "is gone from the artifact store",
         "corrupt": "in the artifact store is not the one registered (sha256 mismatch)"}


def assert_no_store_words(text: str, uri: str) -> None:
    """None of what the store said: the scheme, its bucket, the object's key, its endpoint."""
    endpoint = os.environ["FAIRVALUE_S3_ENDPOINT_URL"].split("//", 1)[1]
    for detail in ("s3://", BUCKET, uri.split("/", 3)[3], endpoint, "NoSuchKey", "expected "):
        assert detail not in text, (detail, text[:2000])


@contextmanager
def stand_in(spoil: str):
    """(version number, artifact URI) of a version registered beside the champion whose artifact is
    gone (`missing`: its URI names no object) or not its bytes (`corrupt`: the champion's object,
    another sha256). The aliases and the decisions as they were afterwards, and the version deleted."""
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        champion = get_alias(session, coll, CHAMPION)
        version = ModelVersion(collection_id=coll.id, version=30_000 + champion.version, estimator=champion.estimator,
                               artifact_uri=champion.artifact_uri + (".gone" if spoil == "missing" else ""),
                               sha256=champion.sha256 if spoil == "missing" else "0" * 64)
        session.add(version)
        session.flush()
        made, number, uri = version.id, version.version, version.artifact_uri
    try:
        with aliases_and_decisions_restored():
            yield number, uri
    finally:
        with session_scope() as session:
            session.execute(delete(PromotionDecision.__table__).where(
                (PromotionDecision.contender_version_id == made) | (PromotionDecision.champion_version_id == made)))
            session.delete(session.get(ModelVersion, made))


def assert_refusal_read(client, operator_headers, number: int, uri: str, reason: str, by: str) -> None:
    """The refusal as /v1/decisions and /v1/models give it, without a token and with one."""
    public = client.get(DECISIONS + "?limit=1").json()["decisions"][0]
    assert (public["decision"], public["by"], public["contender"]) == ("reject", by, number), public
    assert public["reason"] == reason
    assert public["numbers"]["artifact_uri"] == "hidden" and public["numbers"]["store_error"] == "hidden"
    for path in (DECISIONS, "/v1/models", "/models"):
        assert_no_store_words(client.get(path).text, uri)
    shown = client.get(DECISIONS + "?limit=1", headers=operator_headers).json()["decisions"][0]
    assert shown["reason"] == reason and shown["numbers"]["artifact_uri"] == uri
    assert uri in shown["numbers"]["store_error"]  # what the store said, for operators
    assert uri in client.get("/v1/models", headers=operator_headers).text


@pytest.mark.parametrize("spoil", ["missing", "corrupt"])
def test_an_operator_s_refused_promotion_names_no_store_location_to_the_public(
        seeded, s3, client, operator_headers, caplog, spoil):
    with stand_in(spoil) as (number, uri), caplog.at_level(logging.ERROR, logger="fairvalue.reads"):
        refused = client.post(f"/v1/models/{number}/promote", json={"reason": "try it"}, headers=operator_headers)
        assert refused.status_code == 409, refused.text
        reason = f"artifact of version {number} refused: the artifact {STATE[spoil]}; an operator must restore it"
        assert refused.json()["error"] == reason
        assert_no_store_words(refused.text, uri)
        assert any(uri in record.getMessage() for record in caplog.records)  # the store's words: the log
        assert_refusal_read(client, operator_headers, number, uri, reason, "operator")
        assert client.get("/v1/models").json()["aliases"]["champion"] != number


def test_the_monitor_s_refused_rollback_names_no_store_location_to_the_public(
        seeded, s3, client, operator_headers, caplog, monkeypatch):
    """The previous champion's artifact is gone when the monitor would roll back to it."""
    from models import monitor

    monkeypatch.setattr(monitor, "decide_rollback", lambda *_args: monitor.MonitorDecision(
        rollback=True, reason="worse live (forced by the test)", numbers={}))
    with stand_in("missing") as (number, uri), caplog.at_level(logging.ERROR, logger="fairvalue.reads"):
        with session_scope() as session:
            coll = ensure_collection(session, "cryptopunks")
            set_alias(session, coll, PREVIOUS_CHAMPION, session.exec(select(ModelVersion).where(
                ModelVersion.collection_id == coll.id, ModelVersion.version == number)).one())
        out = lifecycle.run_monitor(get_settings())
        reason = f"artifact of version {number} refused: the artifact {STATE['missing']}; an operator must restore it"
        assert out["rollback_refused"].startswith(reason) and uri in out["rollback_refused"]  # the run's, for operators
        assert any(uri in record.getMessage() for record in caplog.records)
        assert_refusal_read(client, operator_headers, number, uri, reason, "monitor")


def test_a_promotion_the_store_cannot_read_now_is_a_409_without_the_store_s_words(
        seeded, s3, client, caplog, monkeypatch):
    """The store refusing connections: 409, nothing changed and nothing recorded, and its endpoint
    ("Could not connect to the endpoint URL: http://…") in the log, not in the answer."""
    from pydantic import SecretStr

    from tests.faults.servers import free_port

    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused at once
    monkeypatch.setenv("FAIRVALUE_S3_ENDPOINT_URL", f"http://{endpoint}")
    monkeypatch.setenv("FAIRVALUE_S3_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    try:
        monkeypatch.setattr(get_settings(), "operator_token", SecretStr("refusal-texts-token"))
        with stand_in("missing") as (number, uri), caplog.at_level(logging.WARNING, logger="fairvalue.reads"):
            before = last_decision_id()
            refused = client.post(f"/v1/models/{number}/promote", json={"reason": "store down"},
                                  headers={"Authorization": "Bearer refusal-texts-token"})
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == (f"nothing changed: the artifact of version {number} cannot be read "
                                               "from the artifact store now; retry later")
            for detail in (endpoint, "http", "s3://", BUCKET):
                assert detail not in refused.text, detail
            assert any(endpoint in record.getMessage() for record in caplog.records)
            assert last_decision_id() == before  # nothing on record against the version
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_refusal_recorded_before_its_reason_left_the_store_s_words_out_is_cut_for_the_public(
        seeded, client, operator_headers):
    """Decisions recorded by the code before this one: the store's words after the reason's first
    colon, the URI in its numbers and no store_error beside it."""
    with stand_in("missing") as (number, uri):
        with session_scope() as session:
            coll = ensure_collection(session, "cryptopunks")
            version = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                              ModelVersion.version == number)).one()
            old = f"artifact of version {number} refused: cannot read {uri}: An error occurred (NoSuchKey)"
            record_decision(session, coll, "reject", "operator", old, {"artifact_uri": uri, "sha256": version.sha256},
                            contender=version.id, champion=None)
        public = client.get(DECISIONS + "?limit=1").json()["decisions"][0]
        assert public["reason"] == f"artifact of version {number} refused"
        assert_no_store_words(client.get(DECISIONS).text, uri)
        assert client.get(DECISIONS + "?limit=1", headers=operator_headers).json()["decisions"][0]["reason"] == old
