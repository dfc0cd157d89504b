"""A real solo-pool worker (as `fairvalue up` runs it) enforces no Celery time limit: the training
stops itself past FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS (fairvalue/lifecycle/training.py _Heartbeat.check_time)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from fairvalue import lifecycle
from storage.db import session_scope
from storage.tables import ModelVersion, PromotionDecision, TaskRun, TrainingRequest
from tasks.lifecycle import publish_training
from tasks.names import TRAIN
from tests.realparts import QUICK, start_worker, stop_worker, training_messages, wait_for

pytestmark = pytest.mark.integration


def _runs(request_id: int) -> list[TaskRun]:
    with session_scope() as session:
        return [r for r in session.exec(select(TaskRun).where(TaskRun.task_name == TRAIN)).all()
                if (r.detail or {}).get("request_id") == request_id]


def test_a_solo_worker_s_training_past_its_time_limit_ends_as_a_timed_out_attempt(seeded, broker, tmp_path):
    # A 1 s limit: loading the market and fitting the contender take longer, so the training is
    # past it at its first check. One attempt: the request fails at once, saying why, and no retry
    # message is published for it (one used to be, 1 s later, and found it failed).
    env = {"FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS": "1", "FAIRVALUE_TRAINING_MAX_ATTEMPTS": "1",
           "FAIRVALUE_TRAINING_RETRY_BACKOFF_SECONDS": "1"}
    worker = start_worker("solo-trainer", "training", tmp_path, env)  # --pool solo
    try:
        request_id = lifecycle.enqueue_retrain("solo pool time limit test", QUICK).request_id
        publish_training(request_id)
        wait_for(lambda: any(r.status != "running" for r in _runs(request_id)), timeout=180)
        # A retry is published before the failed run is recorded (tasks/lifecycle.py train): had one
        # been, it would be in the broker once the failed run's own message is acked, waiting or held
        # by the worker for its 1 s countdown, or run already (the runs are read below, after this).
        assert training_messages(request_id) == []
    finally:
        stop_worker(worker)
    with session_scope() as session:
        request = session.get(TrainingRequest, request_id)
        versions = session.exec(select(ModelVersion).where(ModelVersion.id == request.model_version_id)).all()
        decisions = session.exec(select(PromotionDecision)
                                 .where(PromotionDecision.training_request_id == request_id)).all()
    assert request.state == "failed" and request.attempts == 1
    assert request.error.startswith("TrainingTimedOut: time limit: the training ran past 1 s"), request.error
    assert versions == [] and decisions == []  # nothing trained past the limit was registered
    (only,) = _runs(request_id)
    assert only.status == "failed" and only.detail["error"].startswith("TrainingTimedOut: time limit")
