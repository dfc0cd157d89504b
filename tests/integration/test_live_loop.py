"""The whole slice on real parts: webhook → stored → worker nowcast → published → API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from api import signing
from storage.db import session_scope
from storage.tables import NowcastSnapshot, Sale, TaskRun

pytestmark = pytest.mark.integration
SECRET = "test-secret"


def post_signed(client, payload, secret=SECRET, timestamp=None):
    body = json.dumps(payload).encode()
    return client.post(
        "/v1/webhooks/sales",
        content=body,
        headers={signing.HEADER: signing.sign(secret, body, timestamp), "content-type": "application/json"},
    )


def a_sale(item="7804", price=4200.0, minutes_ago=1, event_id=None):
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "event_id": event_id or f"test:{item}:{ts.timestamp()}",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "punk_id": item,
        "price_eth": price,
        "seller": "0xabc",
        "buyer": "0xdef",
        "source": "test",
    }


def wait_for(predicate, timeout=90.0, interval=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def test_webhook_sale_reaches_a_published_value_through_the_worker(client, worker):
    before = client.get("/v1/items/7804").json()
    sale = a_sale(item="7804", price=5000.0)

    response = post_signed(client, sale)

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert response.json()["follow_up"] == "enqueued"

    def snapshot_that_read_the_sale():
        # Not merely a newer one: a nowcast an earlier test's follow-up started may publish after
        # `before` from a read made before this sale was stored (a CI run failed so, reading 4200).
        body = client.get("/v1/items/7804").json()
        newer = body["snapshot"]["id"] != before["snapshot"]["id"]
        return body if newer and (body.get("last_sale") or {}).get("price") == 5000.0 else None

    after = wait_for(snapshot_that_read_the_sale)
    # The sale reached a published value through the worker, and it moved the value.
    assert after["fair_value"] > 0
    assert after["fair_value"] != before["fair_value"]
    def archived():  # the archive is written right after publishing, so readers never wait for S3
        with session_scope() as session:
            return session.get(NowcastSnapshot, after["snapshot"]["id"])
    snap = wait_for(lambda: (s := archived()).archive_uri and s)
    assert snap.status == "published"
    assert snap.archive_uri.startswith("s3://fairvalue-test/")
    def runs():  # the task records its run after archiving; a loaded machine can be between the two
        with session_scope() as session:
            return session.exec(select(TaskRun.task_name, TaskRun.status)).all()
    assert ("fairvalue.ingest.after_sales", "ok") in runs()
    assert wait_for(lambda: ("fairvalue.nowcast", "ok") in runs(), timeout=60)


def test_archive_in_s3_matches_its_recorded_sha256(seeded, s3):
    with session_scope() as session:
        snap = session.get(NowcastSnapshot, seeded["nowcast"].snapshot_id)
    data = s3.get(snap.archive_uri, snap.archive_sha256)
    import gzip

    lines = gzip.decompress(data).decode().splitlines()
    assert lines[0].startswith("item_key,fair_value,p10,p90,signal")
    assert len(lines) == 10_001


def test_bad_signature_and_stale_timestamp_are_refused(client):
    sale = a_sale(item="1")
    wrong = post_signed(client, sale, secret="not-the-secret")
    stale = post_signed(client, sale, timestamp=int(time.time()) - 3600)
    missing = client.post("/v1/webhooks/sales", content=json.dumps(sale))

    for response in (wrong, stale, missing):
        assert response.status_code == 401
        assert response.json()["error"]
    assert "tolerance" in stale.json()["error"]
    with session_scope() as session:
        assert session.exec(select(Sale).where(Sale.event_id == sale["event_id"])).first() is None


def test_the_same_event_twice_is_stored_once(client, broker):
    sale = a_sale(item="2", price=90.0)
    signed_at = int(time.time())
    first = post_signed(client, sale, timestamp=signed_at).json()
    # A new delivery of the same event (its own signature time, a second before the first's: "a
    # second before now" was the first's own time when the first call crossed a second); the
    # very same delivery again would be a replay, refused before ingest
    # (tests/security/test_webhook_replay.py).
    second = post_signed(client, sale, timestamp=signed_at - 1).json()

    assert (first["accepted"], first["duplicate"]) == (1, 0)
    assert (second["accepted"], second["duplicate"]) == (0, 1)
    with session_scope() as session:
        assert len(session.exec(select(Sale).where(Sale.event_id == sale["event_id"])).all()) == 1


def test_same_event_id_with_other_content_is_rejected_and_kept(client, broker):
    sale = a_sale(item="3", price=80.0)
    post_signed(client, sale)
    changed = dict(sale, price_eth=75.0)

    body = post_signed(client, changed).json()

    assert body["rejected"] == 1
    assert "duplicate_event_conflict" in body["rejected_by_reason"]
    from storage.tables import RejectedSale

    with session_scope() as session:
        kept = session.exec(select(RejectedSale).where(RejectedSale.event_id == sale["event_id"])).all()
    assert [k.reason for k in kept] == ["duplicate_event_conflict"]
    assert kept[0].row == changed  # kept as it was sent, not as it was read


def test_bad_rows_in_a_batch_are_rejected_with_reasons_and_good_ones_kept(client, broker):
    good = a_sale(item="4", price=70.0)
    batch = {"sales": [good, a_sale(item="99999"), dict(a_sale(item="5"), price_eth=0),
                       dict(a_sale(item="6"), timestamp="yesterday-ish"),
                       # an address longer than PostgreSQL's index on the parties takes: every call
                       # committed with it failed (503) before validation capped text fields
                       dict(a_sale(item="7"), seller="0x" + "ab" * 2000),
                       # before the punks could trade: a broken date, not a sale of 2016
                       dict(a_sale(item="8"), timestamp="2016-03-01T12:00:00Z")]}
    signed_at = int(time.time())

    body = post_signed(client, batch, timestamp=signed_at).json()
    again = post_signed(client, batch, timestamp=signed_at - 1).json()  # a new delivery of the same rows

    assert body["accepted"] == 1 and body["rejected_kept_before"] == 0
    assert body["rejected_by_reason"] == {"unknown_item": 1, "non_positive_price": 1, "malformed_timestamp": 1,
                                          "malformed_row": 1, "before_collection": 1}
    assert (again["accepted"], again["duplicate"], again["rejected"], again["rejected_kept_before"]) == (0, 1, 5, 5)


@pytest.mark.parametrize(
    "body, status",
    [(b"{not json", 400), (b'"a string"', 422), (b"[]", 422), (b"[1, 2]", 422)],
)
def test_malformed_webhook_bodies_get_a_reason(client, body, status):
    response = client.post("/v1/webhooks/sales", content=body,
                           headers={signing.HEADER: signing.sign(SECRET, body)})
    assert response.status_code == status
    assert response.json()["error"]


def test_oversized_webhook_body_is_413_and_recorded(client, own_refusal_cap):
    from storage.tables import WebhookDelivery

    body = b"[" + b" " * 1_100_000 + b"]"
    response = client.post("/v1/webhooks/sales", content=body,
                           headers={signing.HEADER: signing.sign(SECRET, body)})
    streamed = client.post("/v1/webhooks/sales", content=iter([body[:600_000], body[600_000:]]))  # no Content-Length
    assert response.status_code == streamed.status_code == 413
    assert response.json()["outcome"] == "too_large"
    with session_scope() as session:
        last = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(2)).all()
    assert [(d.outcome, d.status_code) for d in last] == [("too_large", 413)] * 2


def test_beat_nowcast_entry_runs_on_the_worker(client, worker):
    """Dispatch the schedule's nowcast entry exactly as beat does, and see it publish."""
    import beat_schedule
    from tasks.app import app

    entry = beat_schedule.SCHEDULE["nowcast-every-30-minutes"]
    before = client.get("/v1/items/1").json()["snapshot"]["id"]

    app.send_task(entry["task"], **entry["options"])

    wait_for(lambda: client.get("/v1/items/1").json()["snapshot"]["id"] != before)


def test_queue_status_reads_the_broker_and_the_runs(client, worker, operator_headers):
    body = client.get("/v1/queue").json()

    assert set(body["queues"]) == {"default", "ingest", "nowcast", "training"}
    assert all(isinstance(n, int) for n in body["queues"].values())
    assert "training_requests" in body
    assert isinstance(body["training_leases_expired"], int)  # storage.requests.expired_leases; tests/unit
    assert "fairvalue.nowcast" in body["last_runs"]
    # A solo worker busy with a nowcast answers the ping only when it is done (an answer is kept
    # for queue_reads.WORKERS_SEEN_KEPT_SECONDS, so the wait may take that much longer).
    wait_for(lambda: any(w.startswith("test-worker@") for w in  # the hosts are shown to an operator
                         client.get("/v1/queue", headers=operator_headers).json()["workers"]))
    from fairvalue import queue_reads

    seen = queue_reads.workers_seen()
    assert queue_reads.workers_seen() is seen  # the kept answer: a read does not wait for a ping of its own


def test_readiness_checks_database_broker_and_snapshot(client, broker):
    body = client.get("/readyz").json()
    assert body["ready"] is True and body["status"] == "ok", body
    assert body["checks"]["snapshot"].startswith("ok")


def test_readiness_before_the_collection_is_loaded_is_503_not_404(client, broker, monkeypatch):
    from fairvalue.settings import get_settings

    monkeypatch.setattr(get_settings(), "collection", "not-loaded-yet")
    response = client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["snapshot"] == "none published"


def test_a_collections_loops_skip_until_it_is_loaded(seeded, broker, tmp_path):
    """Each per-collection task, sent through the broker to a worker whose own collection has no
    items yet (FAIRVALUE_COLLECTION, no `collection` argument, as beat sends the punks' tasks),
    records a skipped run and creates nothing: no collection row, no training request that
    cannot succeed, no nowcast failing every half hour."""
    from storage.tables import Collection, TrainingRequest
    from tasks.app import app as celery_app
    from tests.realparts import start_worker, stop_worker

    private_queue = f"skiptest-{time.time_ns()}"
    proc = start_worker("skip-worker", private_queue, tmp_path, env={"FAIRVALUE_COLLECTION": "never-loaded"})
    try:
        with session_scope() as session:
            requests_before = len(session.exec(select(TrainingRequest.id)).all())
        sent = [celery_app.send_task(name, queue=private_queue).id
                for name in ("fairvalue.policy", "fairvalue.monitor", "fairvalue.nowcast", "fairvalue.archive")]

        def runs() -> list[TaskRun] | None:
            with session_scope() as session:
                found = [r for r in session.exec(select(TaskRun).where(TaskRun.task_id.in_(sent)))
                         if r.status != "running"]
                for run in found:
                    session.expunge(run)
            return found if len(found) == len(sent) else None

        finished = wait_for(runs, timeout=120)
    finally:
        stop_worker(proc)
    assert {run.status for run in finished} == {"skipped"}, [(r.task_name, r.detail) for r in finished]
    assert all(run.detail["reason"] == "collection never-loaded is not loaded" for run in finished)
    with session_scope() as session:
        assert session.exec(select(Collection).where(Collection.slug == "never-loaded")).first() is None
        assert len(session.exec(select(TrainingRequest.id)).all()) == requests_before


def test_a_file_backfill_asks_the_worker_for_the_same_follow_up_as_a_webhook(client, worker, tmp_path):
    """`fairvalue ingest sales FILE` with new sales sends fairvalue.ingest.after_sales, which asks
    for an out-of-cycle nowcast; a file with nothing new sends nothing."""
    from typer.testing import CliRunner

    from fairvalue.cli import app

    def follow_ups() -> list[dict]:
        with session_scope() as session:
            return [run.detail for run in session.exec(
                select(TaskRun).where(TaskRun.task_name == "fairvalue.ingest.after_sales", TaskRun.status == "ok")
                .order_by(TaskRun.id)).all()]

    sales = [a_sale(item=item, price=77.0) for item in ("4321", "4322", "4323")]
    path = tmp_path / "backfill.csv"
    path.write_text("event_id,timestamp,punk_id,price_eth\n" + "".join(
        f"{s['event_id']},{s['timestamp']},{s['punk_id']},77\n" for s in sales))
    before = len(follow_ups())
    result = CliRunner().invoke(app, ["ingest", "sales", str(path)])
    assert result.exit_code == 0, result.output
    assert "follow-up sent" in result.output and "not sent" not in result.output
    runs = wait_for(lambda: (runs := follow_ups()) and len(runs) > before and runs)
    assert runs[-1]["accepted"] == 3 and runs[-1]["nowcast_requested"] is True
    assert runs[-1]["collection"] == "cryptopunks"  # named by the sender, not the worker's default
    again = CliRunner().invoke(app, ["ingest", "sales", str(path)])  # all duplicates now
    assert again.exit_code == 0 and "follow-up sent" not in again.output, again.output


def test_a_requested_nowcast_already_served_by_the_published_snapshot_is_skipped(client, worker):
    """Follow-ups of a steady stream of sales, asked for while a nowcast ran, collapse into the
    next one: a request made before the published snapshot's read is served by it, and the
    worker records the skip; one made after it is nowcast."""
    from datetime import timedelta

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from storage.tables import utcnow
    from tasks import queues
    from tasks.app import app as celery_app

    def finished(task_id: str) -> TaskRun | None:
        with session_scope() as session:
            run = session.exec(select(TaskRun).where(TaskRun.task_id == task_id, TaskRun.status != "running")).first()
            if run is not None:
                session.expunge(run)
            return run

    asked = utcnow() - timedelta(seconds=1)
    published = pipeline.nowcast().snapshot_id  # read after `asked`
    assert pipeline.published_read_since(get_settings(), asked) == published
    served = celery_app.send_task("fairvalue.nowcast", queue=queues.NOWCAST, kwargs={
        "collection": "cryptopunks", "requested_at": asked.isoformat()}).id
    run = wait_for(lambda: finished(served), timeout=120)
    assert (run.status, run.detail["reason"]) == ("skipped", f"snapshot {published}, read after the request, "
                                                             "is published")
    fresh = celery_app.send_task("fairvalue.nowcast", queue=queues.NOWCAST, kwargs={
        "collection": "cryptopunks", "requested_at": utcnow().isoformat()}).id
    assert wait_for(lambda: finished(fresh), timeout=120).status == "ok"
    assert client.get("/v1/items/1").json()["snapshot"]["id"] != published
