"""The model lifecycle on real parts: PostgreSQL decides, Redis carries ids, workers train.

Training requests use small boosting budgets (request params) so each trains in seconds.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlmodel import select

from fairvalue import lifecycle
from fairvalue.lifecycle import gating
from storage.db import session_scope
from storage.tables import ModelVersion, PromotionDecision, TaskRun, TrainingRequest
from tasks import names
from tasks.lifecycle import publish_training
from tests.realparts import (
    QUICK,
    ROOT,
    await_workers,
    champion_data_end,
    finished_run,
    set_aside,
    spawn_worker,
    stop_worker,
    training_messages,
)

pytestmark = pytest.mark.integration

def wait_for(predicate, timeout=300.0, interval=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def states(ids):
    with session_scope() as session:
        rows = session.exec(select(TrainingRequest).where(TrainingRequest.id.in_(ids))).all()
        return {r.id: r for r in rows}


@pytest.fixture(scope="module")
def training_workers(worker, tmp_path_factory):
    """Two training workers, started together and shared by this module's tests: a start costs
    6-9 s on two cores, and every test waits on its own requests' states, not on fresh workers."""
    log_dir = tmp_path_factory.mktemp("trainers")
    procs = await_workers([spawn_worker(f"trainer-{i}", "training", log_dir) for i in (1, 2)])
    yield procs
    for proc in procs:
        if proc.poll() is None:
            stop_worker(proc)


# A training worker killed mid-training: tests/faults/test_worker_kill.py.


def train_runs(ids) -> dict[int, list[TaskRun]]:
    """The ended training runs of each request, oldest first."""
    with session_scope() as session:
        runs = session.exec(select(TaskRun).where(TaskRun.task_name == names.TRAIN, TaskRun.status != "running")
                            .order_by(TaskRun.id)).all()
    return {i: [r for r in runs if (r.detail or {}).get("request_id") == i] for i in ids}


def test_requests_some_published_twice_train_exactly_once(training_workers, client):
    """Four requests on two training workers, two of them published twice (as a redelivery or a
    sweep would): each is trained once, and each duplicate reaches a worker and is turned away.
    (tests/faults/test_scale.py holds the same with more workers than requests.)"""
    ids = [lifecycle.enqueue_retrain(f"load test {i}", QUICK).request_id for i in range(4)]
    for request_id in ids:
        publish_training(request_id)
    twice = ids[:2]
    for request_id in twice:  # duplicates, as a redelivery or a sweep would make
        publish_training(request_id)

    assert sum(client.get("/v1/queue").json()["training_requests"].values()) >= 4

    def settled() -> bool:
        runs = train_runs(ids)
        return all(r.state == "decided" for r in states(ids).values()) and \
            all(len(runs[i]) >= (2 if i in twice else 1) for i in ids)

    try:
        wait_for(settled)
    finally:
        from collections import Counter

        print("states:", Counter(r.state for r in states(ids).values()))
        for proc in training_workers:
            print(proc.log.read_text()[-3000:])

    rows = states(ids)
    versions = [r.model_version_id for r in rows.values()]
    assert len(set(versions)) == 4 and None not in versions
    assert all(r.attempts == 1 for r in rows.values())  # nobody claimed a request twice
    with session_scope() as session:
        decided = session.exec(select(PromotionDecision).where(PromotionDecision.training_request_id.in_(ids))).all()
        registered = session.exec(select(ModelVersion).where(ModelVersion.id.in_(versions))).all()
    assert len(decided) == 4 and len(registered) == 4
    assert {d.decision for d in decided} <= {"promote", "shadow", "reject"}
    assert all("checks" in d.numbers and d.numbers["contender"]["n"] > 0 for d in decided)
    for request_id, runs in train_runs(ids).items():  # one run trained it; the duplicate's was turned away
        assert ["decision" in r.detail for r in runs].count(True) == 1, [(r.status, r.detail) for r in runs]
        assert all("skipped" in r.detail for r in runs if "decision" not in r.detail), [r.detail for r in runs]
        assert len(runs) == (2 if request_id in twice else 1), [r.detail for r in runs]
    # Every message left the queue: none waits, the duplicates' included.
    assert client.get("/v1/queue").json()["queues"]["training"] == 0


def test_a_lost_message_is_republished_by_the_sweep_task(training_workers):
    """The request is committed but its message never reaches Redis (a crash between commit
    and publish, or Redis restarted without AOF): the hourly sweep task recovers it."""
    from tasks.app import app

    request_id = lifecycle.enqueue_retrain("lost message", QUICK).request_id
    assert states([request_id])[request_id].published_at is None

    app.send_task("fairvalue.training.sweep")  # what beat does every hour

    wait_for(lambda: states([request_id])[request_id].state == "decided")


def test_policy_records_one_request_per_day(seeded):
    from datetime import UTC, datetime

    from fairvalue.settings import get_settings

    settings = get_settings().model_copy(update={"retrain_max_age_days": 0.0})
    now = datetime(2030, 1, 2, 3, 0, tzinfo=UTC)
    with champion_data_end(timedelta(seconds=1)):  # a sale came after the champion's training data
        first = lifecycle.run_policy(settings, now=now)
        again = lifecycle.run_policy(settings, now=now)

    assert first.retrain and first.new_request
    assert any("old" in r or "age" in r for r in first.reasons)
    assert first.numbers["new_since_training"] >= 1
    assert again.request_id == first.request_id and not again.new_request


def test_an_old_champion_of_a_silent_market_is_not_retrained(seeded):
    """No sale since the champion's training data: a retrain would learn nothing, and the gates
    would reject it for too few sales every day. The outcome says why it did not retrain."""
    from datetime import UTC, datetime

    from fairvalue.settings import get_settings

    settings = get_settings().model_copy(update={"retrain_max_age_days": 7.0})
    now = datetime(2031, 3, 4, 5, 0, tzinfo=UTC)
    with champion_data_end(timedelta(0)):
        outcome = lifecycle.run_policy(settings, now=now)
    assert not any(r.startswith("champion is") for r in outcome.reasons), outcome.reasons
    assert outcome.numbers["new_since_training"] == 0
    assert any(" days old but no sales since its training data (ended " in note for note in outcome.notes), \
        outcome.notes


def test_the_policy_s_request_waits_unpublished_while_training_is_paused(worker):
    """It was published, its message skipped and unpublished, and the hourly sweep republished it:
    one skipped training run an hour until resumed. Now nothing is sent until the resume. The
    policy and the sweep run on the session's worker, sent as beat sends them; the champion is
    made older than FAIRVALUE_RETRAIN_MAX_AGE_DAYS, with a sale after its training data."""
    from fairvalue.settings import get_settings
    from storage.tables import utcnow
    from tasks.app import app

    settings = get_settings()
    made_at = utcnow() - timedelta(days=settings.retrain_max_age_days + 1)
    lifecycle.set_paused("training", True, "test")
    request_id = None
    try:
        with champion_data_end(timedelta(seconds=1), made_at=made_at):
            run = finished_run(app.send_task(names.POLICY, kwargs={"collection": settings.collection}).id)
        request_id = run.detail.get("request_id")
        assert run.status == "ok" and run.detail["new_request"], run.detail
        assert run.detail["published"] is False and "paused" in run.detail["paused"], run.detail
        swept = finished_run(app.send_task(names.SWEEP).id)
        assert (swept.status, swept.detail["republished"]) == ("skipped", []), swept.detail
        # Nothing reached the broker for it, nor any training worker of this module.
        assert states([request_id])[request_id].published_at is None
        assert training_messages(request_id) == [] and train_runs([request_id])[request_id] == []
        lifecycle.set_paused("training", False)
        assert request_id in lifecycle.requests_to_republish()  # what the sweep and a resume publish at once
    finally:
        lifecycle.set_paused("training", False)
        if request_id is not None:  # no training worker of this module should train it
            set_aside(request_id)


def test_pause_makes_a_loop_skip(training_workers):
    lifecycle.set_paused("training", True, "test")
    try:
        request_id = lifecycle.enqueue_retrain("while paused", QUICK).request_id
        lifecycle.mark_published(request_id)
        result = lifecycle.train_request(request_id, "test-direct")
        assert result == {"status": "skipped", "reason": "paused", "skipped": "the training loop is paused"}
        # Its message is spent: the request waits unpublished, for the resume (or the sweep) to publish.
        assert states([request_id])[request_id].state == "queued"
        assert states([request_id])[request_id].published_at is None
        assert request_id in lifecycle.requests_to_republish()
    finally:
        lifecycle.set_paused("training", False)


def test_a_request_published_while_training_is_paused_runs_on_resume(training_workers, client):
    """The operator review: the skipped run was recorded ok, and the request stayed queued and
    published until the sweep found it stale. Now the run is skipped, and resuming publishes it."""
    from typer.testing import CliRunner

    from fairvalue.cli import app
    from storage.tables import TaskRun

    runner = CliRunner()
    assert runner.invoke(app, ["pause", "training", "--reason", "opsfix"]).exit_code == 0
    try:
        queued = runner.invoke(app, ["retrain", "--reason", "while paused", "--param", "max_iter=8",
                                     "--param", "band_max_iter=4", "--param", "band_method=premium",
                                     "--param", "linear_weight=0"])
        assert queued.exit_code == 0, queued.output
        assert "training loop is paused" in queued.output and "published to" not in queued.output
        request_id = int(queued.output.split("training request ")[1].split()[0])
        publish_training(request_id)  # a message sent before the pause, delivered during it

        def skipped_run():
            with session_scope() as session:
                runs = session.exec(select(TaskRun).where(TaskRun.task_name == "fairvalue.training.train")).all()
                return [r for r in runs if (r.detail or {}).get("request_id") == request_id
                        and r.status != "running"]
        runs = wait_for(skipped_run, timeout=60)
        assert [r.status for r in runs] == ["skipped"], [(r.status, r.detail) for r in runs]
        assert states([request_id])[request_id].state == "queued"
        assert states([request_id])[request_id].published_at is None
    finally:
        resumed = runner.invoke(app, ["resume", "training"])
    assert resumed.exit_code == 0, resumed.output
    assert "published" in resumed.output and str(request_id) in resumed.output, resumed.output
    wait_for(lambda: states([request_id])[request_id].state == "decided", timeout=120)

    # The decided request shows its verdict (the review: "decided, v2" for a version the gates rejected).
    from fairvalue import model_reads

    with session_scope() as session:
        decision = session.exec(select(PromotionDecision)
                                .where(PromotionDecision.training_request_id == request_id)).one()
    shown = next(r for r in model_reads.training_requests(limit=500)["training_requests"] if r["id"] == request_id)
    assert shown["decision"] == {"id": decision.id, "decision": decision.decision, "reason": decision.reason}
    listed = client.get("/v1/training-requests?state=decided&limit=500").json()["training_requests"]
    assert next(r for r in listed if r["id"] == request_id)["decision"]["decision"] == decision.decision
    page = client.get("/queue").text
    row = page.split(f"<tr><td>{request_id}</td>", 1)[1].split("</tr>", 1)[0]
    assert f'<span class="badge {decision.decision}">{decision.decision}</span>' in row, row


def test_bad_contender_rejected_and_forced_promotion_rolled_back(seeded, worker):
    """The scenario of issue #4: a deliberately bad contender fails the gates; an operator
    promotes it anyway; live sales show it worse than the previous champion's shadow
    predictions on the same sales, and the monitor rolls it back."""
    from datetime import timedelta

    from fairvalue import pipeline
    from storage.ingest import ensure_collection
    from storage.registry import CHAMPION, get_alias
    from storage.tables import NowcastRow, NowcastSnapshot, utcnow

    request_id = lifecycle.enqueue_retrain("deliberately bad", {"max_iter": 1, "band_max_iter": 1}).request_id
    result = lifecycle.train_request(request_id, "scenario")
    assert result["decision"] == "reject", result
    bad_version = result["model_version"]

    with session_scope() as session:
        good = get_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION)
    lifecycle.operator_promote(bad_version, "operator insists", force=True)
    nowcast = pipeline.nowcast()
    shadow_id = nowcast.shadows["previous_champion"]

    # Sales after that nowcast, priced where the previous champion valued them.
    with session_scope() as session:
        shadow = session.get(NowcastSnapshot, shadow_id)
        rows = session.exec(select(NowcastRow).where(NowcastRow.snapshot_id == shadow_id)
                            .order_by(NowcastRow.item_key).limit(30)).all()
        after = max(shadow.published_at, session.get(NowcastSnapshot, nowcast.snapshot_id).published_at)
    # 50 ms apart (PostgreSQL keeps microseconds): all after both snapshots, in the past once
    # stored, without waiting out a second per sale.
    step = timedelta(milliseconds=50)
    sales = [{"event_id": f"scenario-{r.item_key}", "timestamp": (after + step * (1 + i)).isoformat(),
              "item_id": r.item_key, "price": r.fair_value} for i, r in enumerate(rows)]
    wait_for(lambda: utcnow() > after + step * (len(sales) + 1), timeout=60, interval=0.05)
    report = pipeline.ingest_sales_rows(sales, "scenario")
    assert report.accepted == 30

    outcome = lifecycle.run_monitor()

    assert outcome["probation"]["rollback"] is True, outcome
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        assert get_alias(session, coll, CHAMPION).id == good.id
        bad = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                      ModelVersion.version == bad_version)).one()
        # The bad version's decisions only: the worker may decide another test's late request meanwhile.
        trail = session.exec(select(PromotionDecision).where(PromotionDecision.contender_version_id == bad.id)
                             .order_by(PromotionDecision.id.desc())).all()
    assert [(d.decision, d.decided_by) for d in reversed(trail)] == [
        ("reject", "gates"), ("promote", "operator"), ("rollback", "monitor")]
    rollback = trail[0]
    assert rollback.numbers  # the live errors it compared
    # The monitor's verdict stands: promoting the version again is refused unless forced, naming it.
    with pytest.raises(lifecycle.RejectedByGates, match=f"version {bad_version} was rolled back by the monitor on "):
        lifecycle.operator_promote(bad_version, "once more")
    print("decision trail:", [(d.decision, d.decided_by, d.reason) for d in reversed(trail)])


def test_failed_training_is_retried_with_backoff_then_fails_for_good(seeded, monkeypatch):
    from fairvalue.settings import get_settings

    monkeypatch.setattr(get_settings(), "training_retry_backoff_seconds", 0)
    # enqueue_retrain refuses parameters that cannot train; a request recorded before they were
    # checked can still hold some, and its training fails the same way on every attempt.
    with pytest.raises(lifecycle.BadTrainingParams, match="max_iter"):
        lifecycle.enqueue_retrain("cannot train", {"max_iter": 0})
    request_id = lifecycle.record_request(get_settings(), "retry-test:cannot-train", "cannot train", {},
                                           {"max_iter": 0}).request_id
    for attempt in range(1, 4):
        with pytest.raises(ValueError):
            lifecycle.train_request(request_id, "retry-test")
        row = states([request_id])[request_id]
        assert row.attempts == attempt
        assert row.state == ("queued" if attempt < 3 else "failed")
        assert "max_iter" in row.error
    assert lifecycle.train_request(request_id, "retry-test") == {"skipped": "not claimable (state failed)"}


def test_the_sweep_leaves_a_request_alone_until_its_retry_backoff_is_over(seeded, monkeypatch):
    """A failed training's request goes back to queued with a not-before time, and its retry is
    published with the backoff as countdown. The sweep republished it at once when that retry was
    not sent (the broker refused it) or was sent with a countdown past the stale time: a message the
    claim could only refuse, spent on a skipped run, the request then waiting for a later sweep;
    or, just after the backoff, a second message beside the retry's own."""
    from sqlalchemy import update

    from fairvalue.settings import get_settings
    from storage.tables import utcnow

    settings = get_settings()
    monkeypatch.setattr(settings, "training_retry_backoff_seconds", 3600)
    stale = timedelta(minutes=settings.sweep_stale_minutes)
    request_id = lifecycle.record_request(settings, f"backoff-test:{time.time_ns()}", "cannot train", {},
                                           {"max_iter": 0}).request_id

    def stamped(**times) -> None:
        with session_scope() as session:
            session.execute(update(TrainingRequest).where(TrainingRequest.id == request_id).values(**times))

    try:
        with pytest.raises(ValueError):
            lifecycle.train_request(request_id, "backoff-test")
        row = states([request_id])[request_id]
        assert (row.state, row.attempts, row.published_at) == ("queued", 1, None)
        assert row.not_before > utcnow() + timedelta(minutes=59)
        # Its retry was not sent: nothing publishes it before the backoff is over.
        assert request_id not in lifecycle.requests_to_republish()
        # Sent long ago with the backoff as countdown: its message is not due yet.
        stamped(published_at=utcnow() - 2 * stale)
        assert request_id not in lifecycle.requests_to_republish()
        assert lifecycle.train_request(request_id, "too-early") == {"skipped": "not claimable (state queued)"}
        # Due a minute ago: the retry's own message is on its way (the queue may be busy), not lost.
        stamped(not_before=utcnow() - timedelta(minutes=1))
        assert request_id not in lifecycle.requests_to_republish()
        # The backoff is over and the retry was never sent; or it was due long ago, still unclaimed.
        stamped(published_at=None)
        assert request_id in lifecycle.requests_to_republish()
        stamped(published_at=utcnow() - 3 * stale, not_before=utcnow() - 2 * stale)
        assert request_id in lifecycle.requests_to_republish()
    finally:  # no training worker of this module should train it
        stamped(state="failed", error="test: not meant to train")


@pytest.mark.timeout(600)  # two trainings and a policy run through real workers
def test_induced_drift_files_a_request_that_is_trained_and_gated(seeded, training_workers):
    """The scenario of issue #4, first half: the market moves away from what the champion saw →
    the policy task (sent to the worker as beat sends it) records a drift request and publishes it →
    a training worker trains a contender → the gates' decision is recorded with its numbers.

    The shift: a champion trained before 2021-07-01 (it never saw the 2021 boom), and the last
    60 bundled sales replayed over the past hour at twice their price."""
    from datetime import UTC, datetime, timedelta

    from fairvalue import pipeline
    from storage.bundled import read_sales_file
    from storage.ingest import ensure_collection
    from storage.registry import CHAMPION, get_alias
    from storage.tables import utcnow
    from tasks.app import app

    with session_scope() as session:
        original = get_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION)
    from fairvalue.settings import get_settings

    quick = get_settings().model_copy(update={"train_max_iter": QUICK["max_iter"]})
    stale = pipeline.train(quick, cutoff=datetime(2021, 7, 1, tzinfo=UTC))
    lifecycle.operator_promote(stale.version, "scenario: a champion that never saw the 2021 boom")
    try:
        bundled = sorted(read_sales_file(ROOT / "data/cryptopunks/sales.csv"), key=lambda r: r["timestamp"])
        latest = [r for r in bundled if r["price_eth"] and float(r["price_eth"]) > 0][-60:]
        start = utcnow() - timedelta(hours=1)
        shifted = [{"event_id": f"drift-{r['event_id']}", "item_id": r["punk_id"], "price": 2 * float(r["price_eth"]),
                    "timestamp": (start + timedelta(minutes=i)).isoformat()} for i, r in enumerate(latest)]
        assert pipeline.ingest_sales_rows(shifted, "drift-scenario").accepted == 60
        before = utcnow()

        app.send_task("fairvalue.policy")

        def drift_request():
            with session_scope() as session:
                return session.exec(select(TrainingRequest).where(TrainingRequest.created_at >= before)
                                    .where(TrainingRequest.reason.contains("drift"))).first()

        request = wait_for(drift_request, timeout=120)
        assert "champion is" not in request.reason  # a fresh champion: drift, not age, filed it
        assert request.trigger["share_drifted"] > request.trigger["max_share_drifted"] or \
            request.trigger["prediction_psi"] > request.trigger["max_prediction_psi"]
        decided = wait_for(lambda: states([request.id])[request.id].state in ("decided", "failed") and
                           states([request.id])[request.id], timeout=240)
        assert decided.state == "decided", decided.error
        with session_scope() as session:
            decision = session.exec(select(PromotionDecision)
                                    .where(PromotionDecision.training_request_id == request.id)).one()
            contender = session.get(ModelVersion, decision.contender_version_id)
            stale_version = session.get(ModelVersion, stale.model_version_id)
        assert decision.decided_by == "gates" and decision.decision in ("promote", "shadow", "reject")
        assert contender.id == decided.model_version_id
        assert contender.data_end > stale_version.data_end  # the contender saw the market the champion missed
        numbers = decision.numbers
        assert {"contender", "champion"} <= set(numbers), numbers
        # The worker's version has its diagnostics page too, on the gates' window, stored and verifiable.
        from storage.artifacts import get_store

        page = contender.metrics["diagnostics"]
        html = get_store().get(page["uri"], page["sha256"]).decode()  # raises unless the sha256 matches
        assert html.startswith("<!DOCTYPE html>") and f"v{contender.version}" in page["uri"]
        # The tests' workers train with no learning curve (tests/conftest.py); tests/unit/test_gate_window.py
        # checks the curve of a gated training.
        assert "learning_curve" not in contender.metrics
        trail = lifecycle.decisions(limit=5)  # what `fairvalue decisions` prints: version numbers, not row ids
        assert any(d["training_request"] == request.id and d["contender"] == contender.version and
                   d["champion"] == stale.version for d in trail), trail
        print("drift request:", request.reason)
        print("gate decision:", decision.decision, decision.reason)
    finally:
        lifecycle.operator_promote(original.version, "scenario over: the session champion again")


def test_a_worker_scores_one_champion_once_per_data_version(seeded):
    """The gates' champion evaluation is memoised per champion, data version and window: a second
    request against the same champion and data reuses it instead of refitting the recipe."""
    import pandas as pd

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from models.features import MarketData
    from storage.artifacts import get_store
    from storage.market import load_market_data
    from storage.registry import CHAMPION, get_alias

    settings = get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        data = load_market_data(session, coll)
        champion = get_alias(session, coll, CHAMPION)
    start, _ = gating.gate_window_start(data, settings)
    window = data.sales[data.sales["ts"] >= start].reset_index(drop=True)
    queries = pd.DataFrame({"item_key": window["item_key"], "ts": window["ts"].dt.normalize().clip(lower=start)})
    args = (get_store(settings), champion, data.before(start), data, queries, window, start)
    first, mode, fair = gating._champion_evaluation(*args)
    again, _, _ = gating._champion_evaluation(*args)
    assert again is first and mode in ("artifact", "recipe refit") and len(fair) == len(window)
    assert first.metrics["n"] == len(window) and len(gating._champion_evaluations) == 1
    # A floor revised in place changes no count and no last time: it is other data all the same
    # (the cache gave the champion's score on the data before).
    revised = MarketData(data.items, data.sales, data.market.assign(floor=data.market["floor"] * 1.5))
    moved, _, _ = gating._champion_evaluation(get_store(settings), champion, revised.before(start), revised, queries,
                                              window, start)
    assert moved is not first and moved.metrics["mape"] != first.metrics["mape"]
