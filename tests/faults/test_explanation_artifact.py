"""The explanation reads the published snapshot's model from the artifact store (tests/faults/
test_s3_outage.py: the store hung). Here the store answers, and the model is gone from it or is not
the bytes registered: no retry brings it back, so the answer is a 500 saying so, not the 503 "retry
later" it was; the item's page still renders and says why; no answer names the store's bucket or
keys. The object is put back afterwards, as the other tests of this session read it."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlmodel import select

from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import ModelVersion

pytestmark = pytest.mark.integration
BUCKET = "fairvalue-test"


def published_model_key(client) -> str:
    """The S3 key of the model the published snapshot was valued with (not the champion's alias)."""
    number = client.get("/v1/items/7804").json()["model_version"]
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        version = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                          ModelVersion.version == number)).one()
    assert version.artifact_uri.startswith(f"s3://{BUCKET}/")
    return version.artifact_uri.split("/", 3)[3]


def forget_the_model() -> None:
    """The model as a fresh API process finds it: not read and verified yet."""
    from fairvalue import explanations
    from storage import registry

    with registry._VERIFIED_LOCK:
        registry._VERIFIED.clear()
    explanations._model_and_market.cache_clear()


@contextmanager
def artifact_replaced(s3, key: str, body: bytes | None):
    """The object at `key` deleted (body None) or overwritten with `body`; put back on the way out."""
    original = s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    try:
        if body is None:
            s3.client.delete_object(Bucket=BUCKET, Key=key)
        else:
            s3.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        forget_the_model()
        yield
    finally:
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=original)
        forget_the_model()


@pytest.mark.parametrize(("body", "reason"), [
    (None, "the model of the published snapshot is gone from the artifact store; an operator must restore it"),
    (b"not the model", "the model of the published snapshot in the artifact store is not the one registered"),
])
def test_an_explanation_whose_model_is_lost_is_a_500_not_a_retry(seeded, s3, client, body, reason):
    key = published_model_key(client)
    with artifact_replaced(s3, key, body):
        answer = client.get("/v1/items/7804/explanation")
        assert answer.status_code == 500, answer.text
        assert reason in answer.json()["error"] and "retry" not in answer.text
        assert answer.headers.get("Retry-After") is None
        for detail in (BUCKET, key, "s3://", "http"):  # the store's own words stay in the log
            assert detail not in answer.text, detail
        page = client.get("/items/7804", headers={"Accept": "text/html"})
        assert page.status_code == 200 and reason in page.text and BUCKET not in page.text
    assert client.get("/v1/items/7804/explanation").status_code == 200  # the object back: served again


# --- the other reads of the artifact store: a version's diagnostics page, a snapshot's archive ---

def diagnostics_key(version: int) -> str:
    """The S3 key of version `version`'s diagnostics page, as its metrics recorded it."""
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        found = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                        ModelVersion.version == version)).one()
    uri = found.metrics["diagnostics"]["uri"]
    assert uri.startswith(f"s3://{BUCKET}/")
    return uri.split("/", 3)[3]


@pytest.fixture(scope="module")
def thinned(seeded):
    """(path, snapshot id, S3 key of its archive) of a published snapshot of a collection of its
    own, archived and then thinned by retention: only its archive holds it now."""
    import pandas as pd

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from tests.builders import published_snapshot, thin_as_retention_does

    slug = "archive-lost"
    values = pd.DataFrame({"item_key": ["a", "b"], "fair_value": [10.5, 20.25], "p10": [9.0, 18.0],
                           "p90": [12.0, 23.0], "signal": ["HOLD", "BUY"], "last_price": [10.0, None],
                           "last_sale_at": pd.to_datetime(["2024-01-01T10:00:00", None])})
    snapshot_id = published_snapshot(slug, values)
    uri, error = pipeline.archive_snapshot(get_settings().for_collection(slug), snapshot_id, values)
    assert error is None and uri.startswith(f"s3://{BUCKET}/")
    thin_as_retention_does(snapshot_id)
    return f"/v1/collections/{slug}/snapshots/{snapshot_id}", snapshot_id, uri.split("/", 3)[3]


def assert_lost(answer, reason: str, key: str) -> None:
    assert answer.status_code == 500, answer.text
    assert reason in answer.json()["error"] and "retry" not in answer.text, answer.text
    assert answer.headers.get("Retry-After") is None
    for detail in (BUCKET, key, "s3://", "http"):  # the store's own words stay in the log
        assert detail not in answer.text, detail


@pytest.mark.parametrize(("body", "state"), [
    (None, "is gone from the artifact store; an operator must restore it"),
    (b"not the page", "in the artifact store is not the one registered"),
])
def test_a_diagnostics_page_that_is_lost_is_a_500_not_a_retry(seeded, s3, client, body, state):
    """It was a 503 "retry later" naming the object's URI and the store's answer, whatever the
    store said: a page deleted or overwritten is not brought back by a retry."""
    version = seeded["train"].version
    key = diagnostics_key(version)
    with artifact_replaced(s3, key, body):
        assert_lost(client.get(f"/v1/models/{version}/diagnostics"), f"the diagnostics page of version {version} "
                    + state, key)
    assert client.get(f"/v1/models/{version}/diagnostics").status_code == 200  # the object back: served again


@pytest.mark.parametrize(("body", "state"), [
    (None, "is gone from the artifact store; an operator must restore it"),
    (b"not the archive", "in the artifact store is not the one registered"),
])
def test_an_archive_that_is_lost_once_thinned_is_a_500_not_a_retry(seeded, s3, client, thinned, body, state):
    """A snapshot thinned by retention is served from its archive alone (its rows cannot rebuild
    it): the archive gone or overwritten was a 503 "retry later" naming the object's URI."""
    path, snapshot_id, key = thinned
    with artifact_replaced(s3, key, body):
        assert_lost(client.get(path), f"the archive of snapshot {snapshot_id} " + state, key)
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("read", ["diagnostics", "archive", "explanation"])
def test_a_store_that_does_not_answer_is_a_503_with_a_retry_after(seeded, s3, client, thinned, monkeypatch, read):
    """The store refusing connections is a passing outage: 503 "retry later" with a Retry-After, as
    the database's (none had one), and without the store's endpoint (the diagnostics and the archive
    named it: "Could not connect to the endpoint URL: http://…"). A published snapshot whose rows
    are whole is still served, rebuilt from them."""
    from fairvalue.settings import get_settings
    from tests.faults.servers import free_port

    version, (archive, snapshot_id, _) = seeded["train"].version, thinned
    path, what = {"diagnostics": (f"/v1/models/{version}/diagnostics", f"the diagnostics page of version {version}"),
                  "archive": (archive, f"the archive of snapshot {snapshot_id}"),
                  "explanation": ("/v1/items/7804/explanation", "the model of the published snapshot")}[read]
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused at once
    monkeypatch.setenv("FAIRVALUE_S3_ENDPOINT_URL", f"http://{endpoint}")
    get_settings.cache_clear()
    forget_the_model()
    try:
        answer = client.get(path)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == f"{what} cannot be read from the artifact store now; retry later"
        assert answer.headers.get("Retry-After") == "5"
        for detail in (endpoint, BUCKET, "s3://", "http"):
            assert detail not in answer.text, detail
        assert client.get("/v1/collections/cryptopunks/snapshots/published").status_code == 200
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        forget_the_model()
