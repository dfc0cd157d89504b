"""A training that runs past FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS gives its lease up and ends
its attempt (fairvalue/lifecycle/training.py), on SQLite."""

from __future__ import annotations

import time
from datetime import UTC, timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlmodel import Session

import storage.tables  # noqa: F401  (registers the tables)
from fairvalue import lifecycle
from fairvalue.lifecycle import loops, training
from fairvalue.settings import Settings
from storage import requests
from storage.ingest import ensure_collection
from storage.tables import TrainingRequest, utcnow
from tests.builders import sessions_on


@pytest.fixture
def engine(memory_engine, monkeypatch):
    for module in (training, loops):  # the training and the paused-loop check it makes
        sessions_on(monkeypatch, module, memory_engine)
    return memory_engine


def _request(engine) -> int:
    with Session(engine) as session:
        coll = ensure_collection(session, "cryptopunks")
        request, _ = requests.record(session, coll, "time-limit-test", "test")
        session.commit()
        return request.id


def _lease_expires(engine, request_id):
    with Session(engine) as session:
        return session.get(TrainingRequest, request_id).lease_expires_at.replace(tzinfo=UTC)


class Clock:
    """The training module's time.monotonic, moved by hand: the time limit passes when a test says so,
    however long the steps before took on a loaded host."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(training, "time", clock)  # the module reads only time.monotonic
    return clock


def wait_until(predicate, timeout: float = 30.0):
    """Poll `predicate` until true; fail after `timeout` s (only a hung heartbeat takes that long)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_heartbeat_stops_renewing_past_the_time_limit(engine, clock):
    request_id = _request(engine)
    lease = timedelta(seconds=1.5)  # renewed every 0.5 s
    with Session(engine) as session:
        assert requests.claim(session, request_id, "w/1/a", lease, max_attempts=3)
        session.commit()
    claimed = _lease_expires(engine, request_id)
    with training._Heartbeat(request_id, "w/1/a", lease, renew_for=timedelta(seconds=1)) as heart:
        wait_until(lambda: _lease_expires(engine, request_id) > claimed)  # renewed while under the limit
        assert not heart.gave_up
        clock.now += 1.5  # past the limit: the next wake gives up instead of renewing
        wait_until(lambda: heart.gave_up)
        assert not heart.lost
        heart._thread.join(5)
        assert not heart._thread.is_alive()  # nothing renews the lease any more
        last = _lease_expires(engine, request_id)
        time.sleep(max(0.0, (last - utcnow()).total_seconds()) + 0.05)
        assert _lease_expires(engine, request_id) == last < utcnow()  # run out: the sweep can take it


def test_a_heartbeat_without_a_limit_keeps_renewing(engine):
    request_id = _request(engine)
    lease = timedelta(seconds=1.5)
    with Session(engine) as session:
        assert requests.claim(session, request_id, "w/1/a", lease, max_attempts=3)
        session.commit()
    claimed = _lease_expires(engine, request_id)
    with training._Heartbeat(request_id, "w/1/a", lease) as heart:
        # Renewed again and again: the lease ends over a second after the claimed one would have.
        wait_until(lambda: _lease_expires(engine, request_id) > claimed + timedelta(seconds=1))
        assert not heart.gave_up and not heart.lost


def test_the_soft_time_limit_ends_the_attempt_for_a_retry(engine, monkeypatch):
    request_id = _request(engine)

    def hangs(settings, params, checkpoint):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(training, "train_and_gate", hangs)
    settings = Settings(training_time_limit_seconds=7200, training_max_attempts=2)
    with pytest.raises(lifecycle.TrainingTimedOut, match="time limit"):
        lifecycle.train_request(request_id, "w/1/a", settings)
    with Session(engine) as session:
        request = session.get(TrainingRequest, request_id)
        assert (request.state, request.claimed_by, request.attempts) == ("queued", None, 1)
        assert request.error.startswith("TrainingTimedOut: time limit: the training ran past 7200 s")
    with pytest.raises(lifecycle.TrainingTimedOut):  # past its backoff, the last attempt fails it
        with Session(engine) as session:
            session.get(TrainingRequest, request_id).not_before = None
            session.commit()
        lifecycle.train_request(request_id, "w/1/b", settings)
    with Session(engine) as session:
        assert session.get(TrainingRequest, request_id).state == "failed"


def _no_version_registered(engine, request_id):
    with Session(engine) as session:
        request = session.get(TrainingRequest, request_id)
        return request.model_version_id is None and request.state != "decided"


def test_without_a_pool_time_limit_the_training_stops_itself_between_stages(engine, monkeypatch, clock):
    """The solo pool of `fairvalue up` raises no SoftTimeLimitExceeded: the training checks its
    deadline between stages and ends its attempt as timed out while it still holds its lease (before,
    it ran on, its lease lapsed and its finished result was refused, and the sweep trained it again)."""
    request_id = _request(engine)
    stages = []

    def slow_stages(settings, params, checkpoint):
        for stage in ("load", "contender", "champion"):
            stages.append(stage)
            clock.now += 0.7  # each stage takes 0.7 s of the 1 s limit
            checkpoint()
        raise AssertionError("the final fit runs past the time limit")

    monkeypatch.setattr(training, "train_and_gate", slow_stages)
    settings = Settings(training_time_limit_seconds=1, training_lease_seconds=30, training_max_attempts=2)
    with pytest.raises(lifecycle.TrainingTimedOut, match="ran past 1 s") as raised:
        lifecycle.train_request(request_id, "w/1/a", settings)
    assert stages == ["load", "contender"]  # stopped at the first check past the limit
    assert "now queued" in raised.value.__notes__[0]
    with Session(engine) as session:
        request = session.get(TrainingRequest, request_id)
        assert (request.state, request.claimed_by, request.attempts) == ("queued", None, 1)
        assert request.error.startswith("TrainingTimedOut: time limit: the training ran past 1 s")
    assert _no_version_registered(engine, request_id)


def test_a_last_stage_past_the_time_limit_is_not_registered(engine, monkeypatch, clock):
    request_id = _request(engine)

    def one_long_stage(settings, params, checkpoint):
        clock.now += 1.3  # never checks: one fit that outlasts the limit
        return object()

    def registers(*args):
        raise AssertionError("a training past its time limit must not be registered")

    monkeypatch.setattr(training, "train_and_gate", one_long_stage)
    monkeypatch.setattr(training, "_register_and_decide", registers)
    settings = Settings(training_time_limit_seconds=1, training_lease_seconds=30, training_max_attempts=1)
    with pytest.raises(lifecycle.TrainingTimedOut):
        lifecycle.train_request(request_id, "w/1/a", settings)
    with Session(engine) as session:  # on its last attempt: failed, saying why
        request = session.get(TrainingRequest, request_id)
        assert request.state == "failed" and "time limit" in request.error


def test_the_tasks_carry_the_time_limits():
    from fairvalue.settings import get_settings
    from tasks.lifecycle import train
    from tasks.nowcast import nowcast

    settings = get_settings()
    assert train.soft_time_limit == settings.training_time_limit_seconds
    assert train.time_limit == settings.training_time_limit_seconds + settings.task_kill_grace_seconds
    assert nowcast.soft_time_limit == settings.nowcast_time_limit_seconds
    assert nowcast.time_limit > nowcast.soft_time_limit
    from tasks.cards import collect_card_prices

    assert collect_card_prices.soft_time_limit == settings.card_price_time_limit_seconds
    assert collect_card_prices.time_limit == settings.card_price_time_limit_seconds + settings.task_kill_grace_seconds
