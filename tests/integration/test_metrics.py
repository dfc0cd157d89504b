"""/metrics of the API after real traffic, and the task metrics a real prefork worker exports
in multiprocess mode (tasks run in child processes; the main process serves the sum)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.signing import sign
from tests.integration.conftest import start_worker, stop_worker
from tests.realparts import broker_messages, take_back

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.usefixtures("leaves_nothing_queued")  # the webhooks' follow-ups: no worker here takes them
def test_api_metrics_after_requests_and_webhooks(client, seeded, broker, monkeypatch):
    before = _samples(client.get("/metrics").text)
    for _ in range(3):
        assert client.get("/v1/collections/cryptopunks/items/7804").status_code == 200
    assert client.get("/v1/valuations?ids=1,2").status_code == 200
    assert client.get("/v1/collections/cryptopunks/items/99999").status_code == 404
    body = json.dumps([{"event_id": "metrics-1", "timestamp": "2021-12-30T10:00:00Z", "item_id": "1", "price": 90.0},
                       {"event_id": "metrics-2", "timestamp": "not a time", "item_id": "1", "price": 90.0}]).encode()
    signed_at = int(time.time())
    for i in range(2):  # the second delivery (signed a second earlier, so not a replay) holds duplicates
        signature = sign("test-secret", body, signed_at - i)
        r = client.post("/v1/webhooks/sales", content=body, headers={"Fairvalue-Signature": signature})
        assert r.status_code == 202
    listings = json.dumps({"listings": [
        {"event_id": "metrics-l1", "timestamp": "2021-12-30T10:00:00Z", "item_id": "9001", "price": 1e6},
        {"event_id": "metrics-l2", "timestamp": "2021-12-30T10:00:00Z", "item_id": "9001"}]}).encode()  # no price
    r = client.post("/v1/webhooks/listings", content=listings,
                    headers={"Fairvalue-Signature": sign("test-secret", listings, signed_at)})
    assert r.status_code == 202
    from tasks import queues
    from tasks.app import app

    # The real queues' depths change as the session's workers take messages; a queue of the test's
    # own, which no worker consumes, holds exactly what is sent to it.
    own = "metrics-depth-test"
    monkeypatch.setattr(queues, "ALL", (*queues.ALL, own))
    try:
        for _ in range(3):
            app.send_task("fairvalue.test.never-run", queue=own)
        after = _samples(client.get("/metrics").text)
    finally:
        # Not queue_delete: a fresh channel knows no binding of the queue, and it deleted nothing.
        take_back(own, broker_messages(own))

    route = "/v1/collections/{slug}/items/{item_id}"
    assert _value(after, "fairvalue_http_requests_total", route=route, method="GET", status="200") - \
        _value(before, "fairvalue_http_requests_total", route=route, method="GET", status="200") == 3
    assert _value(after, "fairvalue_http_requests_total", route=route, method="GET", status="404") >= 1
    count = _value(after, "fairvalue_http_request_duration_seconds_count", route=route, method="GET")
    total = _value(after, "fairvalue_http_request_duration_seconds_sum", route=route, method="GET")
    assert count >= 4 and 0 < total / count < 10
    served = sum(_value(after, "fairvalue_predictions_served_total", signal=s) -
                 _value(before, "fairvalue_predictions_served_total", signal=s) for s in ("BUY", "SELL", "HOLD"))
    assert served == 5
    for outcome, expected in (("accepted", 1), ("duplicate", 1), ("rejected", 2)):
        delta = _value(after, "fairvalue_webhook_sales_total", outcome=outcome) - \
            _value(before, "fairvalue_webhook_sales_total", outcome=outcome)
        assert delta == expected, outcome
    for outcome, expected in (("accepted", 1), ("duplicate", 0), ("rejected", 1)):
        assert _value(after, "fairvalue_webhook_listings_total", outcome=outcome) - \
            _value(before, "fairvalue_webhook_listings_total", outcome=outcome) == expected, outcome
    assert _value(after, "fairvalue_queue_depth", queue=own) == 3
    for queue in ("default", "ingest", "nowcast", "training"):
        assert ("fairvalue_queue_depth", (("queue", queue),)) in after
    champions = [labels for (name, labels) in after if name == "fairvalue_champion_model_info"]
    assert any(dict(labels)["collection"] == "cryptopunks" and int(dict(labels)["version"]) >= 1
               for labels in champions)
    age = _value(after, "fairvalue_published_snapshot_age_seconds", collection="cryptopunks")
    assert 0 <= age < 24 * 3600


def test_worker_exports_task_runs_and_durations(seeded, broker, tmp_path):
    from tasks.app import app

    port = _free_port()
    proc = start_worker("metrics-worker", "metrics-test", tmp_path, env={
        "FAIRVALUE_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")},
        pool="prefork", concurrency=2)
    try:
        task = "fairvalue.ingest.after_sales"
        app.send_task(task, args=[0], queue="metrics-test")  # nothing new: succeeds
        app.send_task(task, args=[0], queue="metrics-test")
        app.send_task(task, args=["not a number"], queue="metrics-test")  # raises: a failure
        deadline = time.time() + 60
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            samples = _samples(text)
            ok = _value(samples, "fairvalue_task_runs_total", task=task, outcome="success")
            failed = _value(samples, "fairvalue_task_runs_total", task=task, outcome="failure")
            if (ok, failed) == (2, 1) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert (ok, failed) == (2, 1), text[-2000:]
        n = _value(samples, "fairvalue_task_duration_seconds_count", task=task, outcome="success")
        seconds = _value(samples, "fairvalue_task_duration_seconds_sum", task=task, outcome="success")
        assert n == 2 and 0 < seconds < 60
        assert list((tmp_path / "prom").glob("*.db")), "tasks ran in pool children writing multiprocess files"
    finally:
        stop_worker(proc)


def test_request_labels_stay_bounded_whatever_a_client_sends(client, seeded):
    """A made-up HTTP method would be a new series for the life of the process; static files are
    counted as /static, not among the unmatched requests."""
    for method in ("ZZA", "ZZB"):
        assert client.request(method, "/healthz").status_code == 405
    assert client.get("/static/site.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    samples = _samples(client.get("/metrics").text)
    methods = {dict(labels)["method"] for name, labels in samples if name == "fairvalue_http_requests_total"}
    assert "ZZA" not in methods and "other" in methods
    assert _value(samples, "fairvalue_http_requests_total", route="/static", method="GET", status="200") >= 1
    assert _value(samples, "fairvalue_http_requests_total", route="/static", method="GET", status="404") >= 1


def test_a_405_is_counted_under_the_template_of_the_path_it_matched(client, seeded):
    """The path matched and only the method did not: a 405 was counted as `unmatched`, beside the
    404s of paths no route has, so a client calling a route with the wrong method did not show on it."""
    before = _samples(client.get("/metrics").text)
    assert client.delete("/v1/collections/cryptopunks/items/7804").status_code == 405
    assert client.request("ZZC", "/healthz").status_code == 405
    assert client.get("/v1/webhooks/sales").status_code == 405  # a plain Starlette route answers its own 405
    after = _samples(client.get("/metrics").text)

    def delta(route, method):
        labels = {"route": route, "method": method, "status": "405"}
        return _value(after, "fairvalue_http_requests_total", **labels) - \
            _value(before, "fairvalue_http_requests_total", **labels)

    assert delta("/v1/collections/{slug}/items/{item_id}", "DELETE") == 1
    assert delta("/healthz", "other") == 1 and delta("/v1/webhooks/sales", "GET") == 1
    assert delta("unmatched", "DELETE") == delta("unmatched", "other") == delta("unmatched", "GET") == 0


def test_webhook_refusals_and_rejected_rows_are_counted_by_reason(client, seeded, broker):
    """The webhook counters counted rows by outcome only: why rows were rejected, and calls refused
    whole (unsigned, replayed, ...), did not show. Both are counted by reason, from the code's own
    reasons (a made-up one would be "other")."""
    before = _samples(client.get("/metrics").text)
    body = json.dumps([{"event_id": "reasons-1", "timestamp": "not a time", "item_id": "1", "price": 90.0},
                       {"event_id": "reasons-2", "timestamp": "2021-12-30T10:00:00Z", "item_id": "1",
                        "price": -5}]).encode()
    signed = {"Fairvalue-Signature": sign("test-secret", body, int(time.time()))}
    assert client.post("/v1/webhooks/sales", content=body, headers=signed).status_code == 202
    assert client.post("/v1/webhooks/sales", content=body, headers=signed).status_code == 409  # a replay
    assert client.post("/v1/webhooks/sales", content=body).status_code == 401  # unsigned
    listings = json.dumps({"listings": [{"event_id": "reasons-l1", "timestamp": "2021-12-30T10:00:00Z",
                                         "item_id": "9001"}]}).encode()  # no price
    assert client.post("/v1/webhooks/listings", content=listings, headers={
        "Fairvalue-Signature": sign("test-secret", listings, int(time.time()))}).status_code == 202
    after = _samples(client.get("/metrics").text)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    rows = "fairvalue_webhook_rejected_rows_total"
    assert delta(rows, webhook="sales", reason="malformed_timestamp") == 1
    assert delta(rows, webhook="sales", reason="non_positive_price") == 1
    assert delta(rows, webhook="listings", reason="missing_price") == 1
    assert delta("fairvalue_webhook_refusals_total", reason="replay") == 1
    assert delta("fairvalue_webhook_refusals_total", reason="unsigned") == 1


def test_metrics_show_training_requests_by_state_last_successes_and_decisions(client, seeded):
    """Read from the database at scrape time: training requests by state, each task's last ok
    run (unix seconds) and the promotion decisions by decision and by whom."""
    from datetime import UTC, datetime

    from sqlalchemy import delete

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from models import gates
    from storage.db import session_scope
    from storage.requests import STATES
    from storage.tables import PromotionDecision, TaskRun, TrainingRequest
    from tasks import names

    before = _samples(client.get("/metrics").text)
    finished = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, get_settings())
        rows = [TaskRun(task_name="fairvalue.metrics-probe", status="ok", started_at=finished, finished_at=finished),
                TaskRun(task_name="fairvalue.metrics-probe", status="failed", started_at=finished,
                        finished_at=datetime(2030, 1, 3, tzinfo=UTC)),  # a later failure is no success
                TrainingRequest(collection_id=coll.id, idempotency_key=f"metrics-probe-{time.time_ns()}",
                                state="failed", reason="metrics probe"),
                PromotionDecision(collection_id=coll.id, decision="rollback", decided_by="monitor",
                                  reason="metrics probe", numbers={})]
        session.add_all(rows)
        session.flush()
        ids = [(type(r), r.id) for r in rows]
    try:
        after = _samples(client.get("/metrics").text)
    finally:
        with session_scope() as session:
            for table, row_id in ids:
                session.execute(delete(table.__table__).where(table.__table__.c.id == row_id))

    assert _value(after, "fairvalue_task_last_success_timestamp_seconds",
                  task="fairvalue.metrics-probe") == finished.timestamp()
    assert all(("fairvalue_training_requests", (("state", s),)) in after for s in STATES)
    assert _value(after, "fairvalue_training_requests", state="failed") - \
        _value(before, "fairvalue_training_requests", state="failed") == 1
    assert _value(after, "fairvalue_promotion_decisions_total", decision="rollback", by="monitor") - \
        _value(before, "fairvalue_promotion_decisions_total", decision="rollback", by="monitor") == 1
    # Every known label set is there from the first scrape, 0 until it happens (the gates never roll
    # back: that pair is there only as a 0), and an abandoned run of every task.
    assert all(("fairvalue_promotion_decisions_total", (("by", by), ("decision", d))) in before
               for d in gates.RECORDED for by in gates.DECIDERS)
    assert all(("fairvalue_task_runs_abandoned", (("task", task),)) in before for task in names.ALL)
