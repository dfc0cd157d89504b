"""Duplicate training messages meeting a training in progress, on a real worker: one deferred
re-send per request, the other duplicates acked with a skipped run (fairvalue/lifecycle/training.py
_one_resend, storage/requests.py schedule_resend)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from fairvalue import lifecycle
from fairvalue.settings import get_settings
from storage import requests
from storage.db import session_scope
from storage.tables import TaskRun, TrainingRequest
from tasks import queues
from tasks.lifecycle import publish_training
from tasks.names import TRAIN
from tests.realparts import QUICK, broker_messages, start_worker, stop_worker, training_messages, wait_for

pytestmark = pytest.mark.integration
LEASE = 15  # the holder's: short, so its re-send comes back within the test


def _runs(request_id: int) -> list[TaskRun]:
    with session_scope() as session:
        runs = session.exec(select(TaskRun).where(TaskRun.task_name == TRAIN).order_by(TaskRun.id)).all()
    return [r for r in runs if r.status != "running" and (r.detail or {}).get("request_id") == request_id]


def test_two_duplicates_meeting_a_held_request_send_one_message_again(seeded, broker, tmp_path):
    request_id = lifecycle.enqueue_retrain("duplicate messages test", QUICK).request_id
    # The worker first: its start took more than the lease on a loaded host, and it then claimed the
    # request itself, lawfully, before the duplicates could meet a held lease.
    worker = start_worker("dup-trainer", "training", tmp_path)
    # Then the training messages earlier files left (this process's queue) trained or refused: behind
    # them, the duplicates met the holder's lease after it ran out (three trainings, 40 s, on CI).
    # (the unacked hash holds other queues' messages too: a nowcast held for its countdown)
    wait_for(lambda: not [m for m in broker_messages(queues.TRAINING) if m["task"] == TRAIN],
             timeout=300, interval=1)
    with session_scope() as session:  # a claim that holds the request (and then dies: it never renews)
        assert requests.claim(session, request_id, "holder@elsewhere/1/dead", timedelta(seconds=LEASE),
                              get_settings().training_max_attempts)
    try:
        publish_training(request_id)
        publish_training(request_id)
        turned_away = wait_for(lambda: len(_runs(request_id)) >= 2 and _runs(request_id), timeout=60)
        with session_scope() as session:
            assert session.get(TrainingRequest, request_id).claimed_by == "holder@elsewhere/1/dead"
        # The re-send comes back once the dead holder's lease ran out, claims the request and trains it.
        wait_for(lambda: any("decision" in r.detail for r in _runs(request_id)), timeout=LEASE + 120)
        # A second re-send, had one been sent with the first, would be in the broker now (held by the
        # worker for its countdown, or waiting), or run already: the runs are read after this look.
        assert training_messages(request_id) == []
    finally:
        stop_worker(worker)
    runs = _runs(request_id)
    first, second = turned_away[:2]
    assert first.status == second.status == "skipped"
    scheduled = [r for r in (first, second) if "send_again_in" in r.detail]
    acked = [r for r in (first, second) if "send_again_in" not in r.detail]
    assert len(scheduled) == len(acked) == 1
    assert "a duplicate: the request's one re-send is already scheduled for" in acked[0].detail["skipped"]
    assert len(runs) == 3 and "decision" in runs[2].detail  # the two duplicates, then the one re-send
    with session_scope() as session:
        done = session.get(TrainingRequest, request_id)
    assert done.state == "decided" and done.attempts == 2 and done.claimed_by.startswith("dup-trainer@")
