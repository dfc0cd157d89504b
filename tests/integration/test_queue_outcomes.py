"""What the loops did and which are paused, on /v1/queue, the queue page, /metrics and
`fairvalue status`; last runs per task and collection (task_runs.collection)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fairvalue import lifecycle
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.runs import recorded_run
from storage.tables import TaskRun

pytestmark = pytest.mark.integration


def _paused_gauge(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {s.labels["loop"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "fairvalue_loop_paused"}


def test_the_policy_and_the_monitor_record_their_whole_outcome_and_the_queue_shows_it(client, seeded, monkeypatch):
    from tasks import lifecycle as tasks

    published = []
    monkeypatch.setattr(tasks, "publish_training", lambda request_id, **kw: published.append(request_id))
    monkeypatch.setattr(tasks, "request_nowcast", lambda collection: None)
    slug = get_settings().collection
    policy_run = tasks.retrain_policy.apply(kwargs={"collection": slug}).get()
    monitor_run = tasks.monitor.apply(kwargs={"collection": slug}).get()

    with session_scope() as session:
        stored = session.exec(TaskRun.__table__.select().where(TaskRun.task_name == "fairvalue.policy")
                              .order_by(TaskRun.id.desc()).limit(1)).first()
    assert stored.collection == slug
    numbers = stored.detail["numbers"]  # every number the policy looked at, with its threshold
    for key in ("live_n", "live_mape", "max_live_mape", "share_drifted", "max_share_drifted", "prediction_psi",
                "max_prediction_psi", "champion_age_days", "max_champion_age_days"):
        assert key in numbers, key
    assert isinstance(stored.detail["notes"], list) and policy_run["numbers"] == numbers

    body = client.get("/v1/queue").json()
    assert {"queues", "workers", "training_requests", "last_runs"} <= set(body)  # the keys kept
    assert body["last_runs"]["fairvalue.policy"]["collection"] == slug
    outcomes = {(o["loop"], o["collection"]): o for o in body["loop_outcomes"]}
    policy_outcome, monitor_outcome = outcomes[("policy", slug)], outcomes[("monitor", slug)]
    assert policy_outcome["summary"].startswith("retrain" if policy_run["retrain"] else "no retrain — ")
    assert "champion" in policy_outcome["summary"] and policy_outcome["detail"]["numbers"] == numbers
    assert monitor_outcome["detail"] == {k: v for k, v in monitor_run.items()}
    assert monitor_outcome["summary"]
    page = client.get("/queue").text
    assert "Why the policy and the monitor did or did not act" in page
    assert policy_outcome["summary"].split(" — ")[0] in page


def test_a_collection_s_skipped_run_does_not_hide_another_s(client, seeded):
    task = "test.queue_outcomes.monitor"
    with recorded_run(task) as run:
        run["collection"] = "test-queue-a"
    with recorded_run(task) as run:
        run.update(collection="test-queue-b", status="skipped", reason="not loaded")
    body = client.get("/v1/queue").json()
    mine = {r["collection"]: r["status"] for r in body["last_runs_by_collection"] if r["task"] == task}
    assert mine == {"test-queue-a": "ok", "test-queue-b": "skipped"}
    assert body["last_runs"][task]["collection"] == "test-queue-b"  # the latest of any collection, as before
    page = client.get("/queue").text
    assert "test-queue-a" in page and "test-queue-b" in page


def test_a_paused_loop_shows_with_its_reason_since_when_and_by_whom(client, seeded, operator_headers):
    from typer.testing import CliRunner

    from fairvalue.cli import app as cli
    from fairvalue.cli.running import _operator

    assert _paused_gauge(client).get("monitor") == 0.0
    assert CliRunner().invoke(cli, ["pause", "monitor", "--reason", "queue outcomes test"]).exit_code == 0
    try:
        body = client.get("/v1/queue", headers=operator_headers).json()  # who paused: for operators
        paused = {p["loop"]: p for p in body["paused_loops"]}
        assert paused["monitor"]["reason"] == "queue outcomes test" and paused["monitor"]["since"].endswith("Z")
        assert paused["monitor"]["by"] == _operator() and "@" in _operator()
        assert "queue outcomes test" in client.get("/queue").text
        assert _paused_gauge(client)["monitor"] == 1.0
        assert _paused_gauge(client)["nowcast"] == 0.0
        result = CliRunner().invoke(cli, ["status"])
        assert f"monitor (queue outcomes test) since {paused['monitor']['since']} by {_operator()}" in \
            " ".join(result.output.split()), result.output
    finally:
        lifecycle.set_paused("monitor", False)
    assert "monitor" not in {p["loop"] for p in client.get("/v1/queue").json()["paused_loops"]}
    assert _paused_gauge(client)["monitor"] == 0.0


def test_a_message_delivered_and_not_acknowledged_is_counted(client, broker):
    """A message a worker took and did not acknowledge (running, or held by a worker that died,
    until the visibility timeout gives it back) is in no queue's depth: /v1/queue and /metrics
    count it apart."""
    import time

    from tasks.app import app

    with app.connection_for_write() as conn:
        probe = conn.SimpleQueue(f"fv-unacked-probe-{time.time_ns()}")
        try:
            probe.put({"probe": True})
            held = probe.get(timeout=10)  # delivered, not acknowledged
            try:
                assert client.get("/v1/queue").json()["unacked"] >= 1
                samples = {s.name: s.value for family in text_string_to_metric_families(client.get("/metrics").text)
                           for s in family.samples}
                assert samples["fairvalue_queue_unacked"] >= 1
            finally:
                held.ack()
        finally:
            probe.queue.delete()
            probe.close()
