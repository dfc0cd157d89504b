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
