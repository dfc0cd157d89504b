"""The group-commit writer (fairvalue/group_commit.py): each caller gets its own result, calls
waiting while the writer is busy share a batch, a lone call does not wait for a timer, and a
failing batch is retried call by call so one bad call cannot fail the others."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from fairvalue.group_commit import GroupCommitter


class Recorder:
    """process_batch / process_one that double their input and remember the batches they saw."""

    def __init__(self, fail_on=None, hold: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.alone: list[int] = []
        self.fail_on = fail_on
        self.hold = hold

    def batch(self, works):
        self.batches.append(list(works))
        if self.hold is not None:
            self.hold.wait(5)
        if self.fail_on in works:
            raise ValueError("bad call in batch")
        return [w * 2 for w in works]

    def one(self, work):
        self.alone.append(work)
        if work == self.fail_on:
            raise ValueError(f"bad call {work}")
        return work * 2


def test_calls_waiting_together_share_one_batch_and_get_their_own_results():
    rec = Recorder()
    committer = GroupCommitter(rec.batch, rec.one)
    futures = committer.submit_all([1, 2, 3, 4])
    assert [f.result(5) for f in futures] == [2, 4, 6, 8]
    assert rec.batches == [[1, 2, 3, 4]] and rec.alone == []


def test_calls_arriving_while_the_writer_is_busy_form_the_next_batch_in_arrival_order():
    hold = threading.Event()
    rec = Recorder(hold=hold)
    committer = GroupCommitter(rec.batch, rec.one)
    first = committer.submit_all([0, 1])  # the writer holds this batch until released
    while not rec.batches:
        time.sleep(0.001)
    later = [committer.submit(n) for n in (5, 6, 7)]
    hold.set()
    assert [f.result(5) for f in first + later] == [0, 2, 10, 12, 14]
    assert rec.batches == [[0, 1], [5, 6, 7]]


def test_the_cap_splits_what_is_waiting():
    rec = Recorder()
    committer = GroupCommitter(rec.batch, rec.one, max_batch=3)
    assert [f.result(5) for f in committer.submit_all(list(range(1, 8)))] == [2, 4, 6, 8, 10, 12, 14]
    assert rec.batches == [[1, 2, 3], [4, 5, 6]] and rec.alone == [7]


def test_a_lone_call_goes_at_once(monkeypatch):
    """No linger timer: the writer takes a lone call without a timed wait for company. Checked by
    what the writer thread waits on (a timed get of the queue, a sleep, a timed wait on a
    condition or event, a Timer), not by the wall clock, which a loaded host stretches anyway."""
    timed: list[str] = []
    committer = None

    def on_writer(what: str) -> None:
        if committer is not None and threading.current_thread() is committer._writer:
            timed.append(what)

    class WatchedQueue(queue.SimpleQueue):
        def get(self, block=True, timeout=None):
            if block and timeout is not None:
                on_writer(f"queue get(timeout={timeout})")
            return super().get(block, timeout)

    sleep, wait, start = time.sleep, threading.Condition.wait, threading.Timer.start

    def watched_sleep(seconds):
        on_writer(f"sleep({seconds})")
        sleep(seconds)

    def watched_wait(self, timeout=None):
        if timeout is not None:
            on_writer(f"wait({timeout})")
        return wait(self, timeout)

    def watched_start(self):
        on_writer("Timer")
        start(self)

    monkeypatch.setattr(time, "sleep", watched_sleep)
    monkeypatch.setattr(threading.Condition, "wait", watched_wait)  # Event.wait waits on one
    monkeypatch.setattr(threading.Timer, "start", watched_start)
    monkeypatch.setattr(queue, "SimpleQueue", WatchedQueue)  # the committer's pending queue
    rec = Recorder()
    committer = GroupCommitter(rec.batch, rec.one)
    committer.submit(0).result(5)  # the writer is started
    assert committer.submit(21).result(5) == 42
    assert rec.alone == [0, 21] and rec.batches == []
    assert timed == []


def test_a_failing_batch_is_retried_call_by_call():
    rec = Recorder(fail_on=2)
    committer = GroupCommitter(rec.batch, rec.one)
    futures = committer.submit_all([1, 2, 3])
    assert futures[0].result(5) == 2 and futures[2].result(5) == 6
    with pytest.raises(ValueError, match="bad call 2"):
        futures[1].result(5)
    assert rec.batches == [[1, 2, 3]] and rec.alone == [1, 2, 3]


def test_the_writer_survives_a_broken_process_function():
    def broken_batch(works):
        return []  # fewer results than calls: a bug, not a database error

    committer = GroupCommitter(broken_batch, lambda w: w)
    futures = committer.submit_all([1, 2])
    for f in futures:
        with pytest.raises(RuntimeError):
            f.result(5)
    assert committer.submit(3).result(5) == 3


def test_an_error_no_call_caused_goes_to_every_call_at_once():
    class DatabaseDown(Exception):
        pass

    alone = []

    def batch(works):
        raise DatabaseDown("connection refused")

    def one(work):
        alone.append(work)
        raise DatabaseDown("connection refused")

    committer = GroupCommitter(batch, one, retry_alone=lambda exc: not isinstance(exc, DatabaseDown))
    futures = committer.submit_all([1, 2, 3])
    for f in futures:
        with pytest.raises(DatabaseDown):
            f.result(5)
    assert alone == []  # nobody waited out a retry of the others


def test_the_webhook_writer_retries_call_by_call_only_what_a_call_can_cause():
    from sqlalchemy import exc as db_errors

    from api.webhooks import _caused_by_a_call

    assert _caused_by_a_call(db_errors.IntegrityError("insert", {}, Exception("duplicate key")))
    assert _caused_by_a_call(ValueError("a bug"))
    assert not _caused_by_a_call(db_errors.OperationalError("connect", {}, Exception("connection refused")))
