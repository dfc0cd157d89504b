"""What the loops did and which are paused, on /v1/queue, the queue page, /metrics and
`fairvalue status`; last runs per task and collection (task_runs.collection)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fairvalue import lifecycle
from fairvalue.queue_reads import public_detail
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.runs import recorded_run
from storage.tables import TrainingRequest, utcnow
from tasks import names, queues
from tasks.app import app
from tests.realparts import champion_data_end, finished_run, set_aside, take_back, training_messages

pytestmark = pytest.mark.integration


def _paused_gauge(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {s.labels["loop"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "fairvalue_loop_paused"}


def test_the_policy_and_the_monitor_record_their_whole_outcome_and_the_queue_shows_it(client, worker):
    """Both sent to the session's worker, as beat sends them. The champion made older than
    FAIRVALUE_RETRAIN_MAX_AGE_DAYS, with a sale after its training data: the policy files a request
    and publishes it to the training queue, where it waits: no training worker runs in this file
    (taken back after, and the request set aside)."""
    settings = get_settings()
    slug = settings.collection
    made_at = utcnow() - timedelta(days=settings.retrain_max_age_days + 1)
    with champion_data_end(timedelta(seconds=1), made_at=made_at):
        policy_run = finished_run(app.send_task(names.POLICY, kwargs={"collection": slug}).id)
    request_id = policy_run.detail.get("request_id")
    try:
        assert policy_run.status == "ok" and policy_run.collection == slug, policy_run.detail
        assert policy_run.detail["retrain"] and policy_run.detail["new_request"], policy_run.detail
        assert "champion is " in "; ".join(policy_run.detail["reasons"]), policy_run.detail  # age, with others
        # What reached the broker: the request is published and its one message waits in the training queue.
        assert policy_run.detail["published"] is True and "not_sent" not in policy_run.detail, policy_run.detail
        with session_scope() as session:
            assert session.get(TrainingRequest, request_id).published_at is not None
        sent = training_messages(request_id)
        assert [m["where"] for m in sent] == ["waiting"], sent

        monitor_run = finished_run(app.send_task(names.MONITOR, kwargs={"collection": slug}).id)
        assert monitor_run.status == "ok" and "not_sent" not in monitor_run.detail, monitor_run.detail

        numbers = policy_run.detail["numbers"]  # every number the policy looked at, with its threshold
        for key in ("live_n", "live_mape", "max_live_mape", "share_drifted", "max_share_drifted", "prediction_psi",
                    "max_prediction_psi", "champion_age_days", "max_champion_age_days"):
            assert key in numbers, key
        assert isinstance(policy_run.detail["notes"], list)

        body = client.get("/v1/queue").json()
        assert {"queues", "workers", "training_requests", "last_runs"} <= set(body)  # the keys kept
        assert body["queues"][queues.TRAINING] >= 1  # the policy's message, counted where it waits
        assert body["last_runs"]["fairvalue.policy"]["collection"] == slug
        outcomes = {(o["loop"], o["collection"]): o for o in body["loop_outcomes"]}
        policy_outcome, monitor_outcome = outcomes[("policy", slug)], outcomes[("monitor", slug)]
        assert policy_outcome["summary"].startswith(f"retrain (request {request_id}, new) — ")
        assert "champion is " in policy_outcome["summary"] and policy_outcome["detail"]["numbers"] == numbers
        assert monitor_outcome["detail"] == public_detail(monitor_run.detail)
        assert monitor_outcome["summary"]
        page = client.get("/queue").text
        assert "Why the policy and the monitor did or did not act" in page
        assert policy_outcome["summary"].split(" — ")[0] in page
    finally:
        if request_id is not None:
            set_aside(request_id)
            take_back(queues.TRAINING, training_messages(request_id))


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
