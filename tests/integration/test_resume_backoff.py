"""`fairvalue resume training`, the hourly sweep and a request still in its retry's backoff, on real parts.

Resuming, and the sweep, published only what was due at once (queued and past any backoff): a
request whose retry was not sent (the broker refused it, or its message was spent while training
was paused) and whose backoff had not yet ended was left to the first sweep after the backoff, and
trained up to an hour after it could have been. Now both publish it with what is left of its
backoff as countdown (Celery's `eta` header), and a request past its backoff at once, as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from fairvalue import lifecycle
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.tables import TaskRun, TrainingRequest, utcnow
from tasks import names, queues
from tests.realparts import (
    QUICK,
    broker_messages,
    finished_run,
    nothing_left_queued,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

# Left of the in-backoff request's backoff at the resume: long enough to read its message before it
# is due, short enough to see it trained without a sweep.
BACKOFF_LEFT = timedelta(seconds=30)
# The same for the sweep's test, which runs two sweeps inside it: the second must find the request
# published and send it nothing more.
SWEEP_BACKOFF_LEFT = timedelta(seconds=60)
# From computing the countdown to sending it (a database read, the other request's send): the
# `eta` Celery writes (the sender's clock plus the countdown) lies this little past `not_before`.
SEND_SLACK = timedelta(seconds=5)


@pytest.fixture(scope="module")
def trainer(seeded, broker, tmp_path_factory):
    """One training worker, as `fairvalue worker -Q training` runs it."""
    proc = start_worker("resume-trainer", queues.TRAINING, tmp_path_factory.mktemp("resume-trainer"))
    yield proc
    stop_worker(proc)


def row(request_id: int) -> TrainingRequest:
    with session_scope() as session:
        return session.get(TrainingRequest, request_id)


def stamp(request_id: int, **values) -> None:
    with session_scope() as session:
        session.execute(update(TrainingRequest).where(TrainingRequest.id == request_id).values(**values))


def message_for(request_id: int) -> dict:
    """The one training message of `request_id` the broker holds (waiting, or held by the worker for
    its countdown), with its headers."""
    def held():
        return [m for m in broker_messages(queues.TRAINING)
                if m["task"] == names.TRAIN and m["args"][:1] == [request_id]]

    held = wait_for(held, timeout=20, interval=0.2)
    assert len(held) == 1, held
    return held[0]


def train_runs(request_id: int) -> list[TaskRun]:
    with session_scope() as session:
        runs = session.exec(select(TaskRun).where(TaskRun.task_name == names.TRAIN, TaskRun.status != "running")
                            .order_by(TaskRun.id)).all()
    return [r for r in runs if (r.detail or {}).get("request_id") == request_id]


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def test_resume_publishes_a_request_in_its_backoff_for_when_the_backoff_ends(trainer):
    from typer.testing import CliRunner

    from fairvalue.cli import app

    stale = timedelta(minutes=get_settings().sweep_stale_minutes)
    runner = CliRunner()
    with nothing_left_queued():
        lifecycle.set_paused(lifecycle.TRAINING_LOOP, True, "test: resume and backoff")
        try:
            # Two requests that failed an attempt and whose retry has no message: one still in its
            # backoff, one past it.
            in_backoff = lifecycle.enqueue_retrain("resume: in its backoff", QUICK).request_id
            past_backoff = lifecycle.enqueue_retrain("resume: past its backoff", QUICK).request_id
            not_before = utcnow() + BACKOFF_LEFT
            for request_id, until in ((in_backoff, not_before), (past_backoff, utcnow() - timedelta(minutes=1))):
                stamp(request_id, attempts=1, not_before=until, published_at=None,
                      error="test: an earlier attempt failed")
        finally:
            resumed = runner.invoke(app, ["resume", "training"])
        assert resumed.exit_code == 0, resumed.output

        # The broker holds one message for each: the one past its backoff due at once, the other
        # with an `eta` at the end of its backoff, not a moment before (the claim would refuse it).
        assert message_for(past_backoff)["headers"].get("eta") is None
        eta = message_for(in_backoff)["headers"].get("eta")
        assert eta is not None, "published at once, or left to the sweep"
        assert timedelta(0) <= datetime.fromisoformat(eta) - not_before < SEND_SLACK, (eta, not_before)
        assert f"{in_backoff} (due in " in resumed.output and f"{past_backoff}" in resumed.output, resumed.output

        # Published now: neither the sweep (inside the backoff or up to the stale time after it) nor
        # another resume sends it again beside its own message.
        assert row(in_backoff).published_at is not None
        for moment in (utcnow(), not_before + timedelta(seconds=1), not_before + stale - timedelta(seconds=1)):
            assert in_backoff not in lifecycle.requests_to_republish(now=moment), moment
        assert in_backoff not in [request_id for request_id, _ in lifecycle.requests_to_publish()]

        # Its message arrives as the backoff ends and the claim takes it: trained on that one
        # message, no run refused as early, no sweep needed.
        wait_for(lambda: row(past_backoff).state == "decided" and row(in_backoff).state == "decided", timeout=240)
        runs = train_runs(in_backoff)
        assert [r.status for r in runs] == ["ok"], [(r.status, r.detail) for r in runs]
        assert aware(runs[0].started_at) >= not_before, (runs[0].started_at, not_before)
        assert row(in_backoff).attempts == 2


def test_the_sweep_publishes_a_request_in_its_backoff_for_when_the_backoff_ends(trainer, worker):
    """The sweep, sent as beat sends it and run by the general worker, publishes a request whose
    retry was not sent as a resume does: for when its backoff ends, saying so in its run. It used to
    leave it to its first run after the backoff, up to an hour late. Published then, the next sweep
    inside the backoff sends it no second message."""
    from tasks.app import app

    with nothing_left_queued():
        in_backoff = lifecycle.enqueue_retrain("sweep: in its backoff", QUICK).request_id  # recorded, not sent
        not_before = utcnow() + SWEEP_BACKOFF_LEFT
        stamp(in_backoff, attempts=1, not_before=not_before, published_at=None, error="test: an earlier attempt failed")

        swept = finished_run(app.send_task(names.SWEEP).id)
        assert swept.status == "ok" and in_backoff in swept.detail["republished"], swept.detail
        countdown = {sent["request_id"]: sent["countdown_seconds"] for sent in swept.detail["sent_with_countdown"]}
        assert 0 < countdown[in_backoff] <= SWEEP_BACKOFF_LEFT.total_seconds(), swept.detail
        # Its one message is due as the backoff ends, not a moment before (the claim would refuse it).
        eta = message_for(in_backoff)["headers"].get("eta")
        assert eta is not None, "published at once"
        assert timedelta(0) <= datetime.fromisoformat(eta) - not_before < SEND_SLACK, (eta, not_before)
        assert row(in_backoff).published_at is not None

        # The next sweep, inside the backoff, leaves it alone: still the one message.
        again = finished_run(app.send_task(names.SWEEP).id)
        assert aware(again.finished_at) < not_before, "the second sweep ended after the backoff: nothing shown"
        assert again.status == "ok" and in_backoff not in again.detail["republished"], again.detail
        assert in_backoff not in [sent["request_id"] for sent in again.detail["sent_with_countdown"]], again.detail
        message_for(in_backoff)

        # Trained on that message as the backoff ends, no run refused as early.
        wait_for(lambda: row(in_backoff).state == "decided", timeout=240)
        runs = train_runs(in_backoff)
        assert [r.status for r in runs] == ["ok"], [(r.status, r.detail) for r in runs]
        assert aware(runs[0].started_at) >= not_before, (runs[0].started_at, not_before)
        assert row(in_backoff).attempts == 2
