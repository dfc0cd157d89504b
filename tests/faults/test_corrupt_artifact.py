"""A model artifact whose bytes no longer match the registry's sha256 (tampered or corrupted
in the store) is refused, never unpickled, and the champion keeps serving."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlmodel import select

from fairvalue.settings import get_settings
from storage.artifacts import get_store
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.registry import CHAMPION, get_alias, load_model, register_version, set_alias
from storage.tables import PromotionDecision, TaskRun
from tasks.app import app
from tests.realparts import served_from, wait_for
from tests.security.test_artifact_loading import hostile_joblib

pytestmark = pytest.mark.integration
TOKEN = "faults-operator"


@pytest.fixture()
def operator(monkeypatch):
    monkeypatch.setattr(get_settings(), "operator_token", SecretStr(TOKEN))
    return {"Authorization": f"Bearer {TOKEN}"}


def champion():
    with session_scope() as session:
        return get_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION)


def tampered_version(s3, marker):
    """A registered version (the champion's model, so a fine artifact), then its object in S3
    overwritten with a pickle that would create `marker` if it were ever loaded."""
    store = get_store()
    model = load_model(store, champion())
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        version = register_version(session, store, coll, model, {"note": "to be tampered"}, None, None, 0, "test")
    key = version.artifact_uri.split("/", 3)[3]
    s3.client.put_object(Bucket="fairvalue-test", Key=key, Body=hostile_joblib(marker))
    return version


def nowcast_on_worker() -> TaskRun:
    task_id = app.send_task("fairvalue.nowcast").id

    def finished():
        with session_scope() as session:
            run = session.exec(select(TaskRun).where(TaskRun.task_id == task_id)).first()
            return run if run is not None and run.status != "running" else None

    return wait_for(finished, timeout=180)


def test_a_tampered_artifact_is_refused_and_the_champion_keeps_serving(seeded, s3, client, worker, operator,
                                                                       tmp_path):
    """Afterwards: promoting the tampered version was refused (409 with the sha256 reason, the
    refusal recorded) and the champion is unchanged; a worker that is made to use it anyway (the
    alias moved behind the service's back) refuses to load it, so the nowcast fails, the pointer
    stays on the last good snapshot and the API keeps serving it; the hostile pickle never ran.
    With the alias back, the next nowcast publishes with the champion."""
    marker = tmp_path / "unpickled"
    good = champion()
    bad = tampered_version(s3, marker)
    served = client.get("/v1/items/7804").json()["snapshot"]["id"]

    refused = client.post(f"/v1/models/{bad.version}/promote", json={"reason": "try it"}, headers=operator)

    assert refused.status_code == 409, refused.text
    assert "sha256 mismatch" in refused.json()["error"]
    assert champion().id == good.id
    with session_scope() as session:
        last = session.exec(select(PromotionDecision).order_by(PromotionDecision.id.desc())).first()
    assert (last.decision, last.decided_by, last.contender_version_id) == ("reject", "operator", bad.id)

    with session_scope() as session:
        set_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION, bad)  # tampering, not an API
    try:
        failed = nowcast_on_worker()
    finally:
        with session_scope() as session:
            set_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION, good)
    assert failed.status == "failed" and "sha256 mismatch" in failed.detail["error"]
    still = client.get("/v1/items/7804")
    assert still.status_code == 200 and still.json()["snapshot"]["id"] == served
    assert not marker.exists()

    healed = nowcast_on_worker()
    assert healed.status == "ok", healed.detail
    body = served_from(client, healed.detail["snapshot_id"])
    assert body["model_version"] == good.version
    assert not marker.exists()
