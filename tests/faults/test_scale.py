"""Horizontal scale: two worker processes on each queue, one Redis, one PostgreSQL.

Nowcasts and training requests are sent while both pools run; requests are also published
twice (as a redelivery or the sweep would). Nothing may be done twice."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from sqlalchemy import func
from sqlmodel import select

from fairvalue import lifecycle
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.snapshots import published_snapshot
from storage.tables import ModelVersion, NowcastRow, NowcastSnapshot, PromotionDecision, TaskRun, TrainingRequest
from tasks.app import app
from tasks.lifecycle import publish_training
from tests.realparts import await_workers, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration
# Small budgets: what is tested is that each request is trained exactly once, not the model. The
# premium band alone and no linear blend fit three quantile models instead of four and a ridge.
QUICK = {"max_iter": 6, "band_max_iter": 3, "band_method": "premium", "linear_weight": 0.0}
NOWCAST_QUEUE = "faults-scale-nowcast"  # the two general workers of this test, nobody else
N_NOWCASTS, N_REQUESTS = 2, 2  # one each per worker at least: prefetch 1 makes a busy worker leave the next


# A duplicate taken while the other worker trained its request is sent again for a lease later (tasks.lifecycle.train).
@pytest.mark.usefixtures("leaves_nothing_queued")
def test_two_workers_per_queue_do_nothing_twice(seeded, tmp_path):
    """Afterwards: every nowcast message ran exactly once and each snapshot values every item
    exactly once (10,000 rows, 10,000 distinct items); the pointer is on the latest of them;
    both general workers took nowcasts; every training request was trained exactly once
    (attempts 1, its own version, one decision) although each was published twice, and both
    training workers trained."""
    procs = [spawn_worker(f"scale-{kind}-{i}", queue, tmp_path)
             for kind, queue in (("general", NOWCAST_QUEUE), ("training", "training")) for i in (1, 2)]
    try:
        await_workers(procs)
        request_ids = [lifecycle.enqueue_retrain(f"scale {i}", QUICK).request_id for i in range(N_REQUESTS)]
        for request_id in request_ids * 2:
            publish_training(request_id)
        task_ids = [app.send_task("fairvalue.nowcast", queue=NOWCAST_QUEUE).id for _ in range(N_NOWCASTS)]

        def done():
            with session_scope() as session:
                runs = session.exec(select(TaskRun).where(TaskRun.task_id.in_(task_ids))).all()
                trained = session.exec(select(func.count()).select_from(TrainingRequest).where(
                    TrainingRequest.id.in_(request_ids), TrainingRequest.state == "decided")).one()
            return len(runs) == N_NOWCASTS and all(r.status == "ok" for r in runs) and trained == N_REQUESTS

        wait_for(done, timeout=300)
    finally:
        for proc in procs:
            stop_worker(proc)

    with session_scope() as session:
        runs = session.exec(select(TaskRun).where(TaskRun.task_id.in_(task_ids))).all()
        assert sorted(r.task_id for r in runs) == sorted(task_ids)  # each message ran once
        snapshot_ids = [r.detail["snapshot_id"] for r in runs]
        counts = session.exec(
            select(NowcastRow.snapshot_id, func.count(), func.count(func.distinct(NowcastRow.item_key)))
            .where(NowcastRow.snapshot_id.in_(snapshot_ids)).group_by(NowcastRow.snapshot_id)).all()
        assert sorted(counts) == sorted((s, 10_000, 10_000) for s in snapshot_ids)
        snaps = session.exec(select(NowcastSnapshot).where(NowcastSnapshot.id.in_(snapshot_ids))).all()
        latest = max((s for s in snaps if s.status == "published"), key=lambda s: s.as_of)
        assert published_snapshot(session, ensure_collection(session, "cryptopunks")).as_of >= latest.as_of

        requests = session.exec(select(TrainingRequest).where(TrainingRequest.id.in_(request_ids))).all()
        assert all(r.attempts == 1 for r in requests)
        versions = [r.model_version_id for r in requests]
        assert len(set(versions)) == N_REQUESTS and None not in versions
        assert session.exec(select(func.count()).select_from(ModelVersion)
                            .where(ModelVersion.id.in_(versions))).one() == N_REQUESTS
        decisions = session.exec(select(PromotionDecision.training_request_id)
                                 .where(PromotionDecision.training_request_id.in_(request_ids))).all()
        assert sorted(decisions) == sorted(request_ids)
        trained_by = Counter(r.claimed_by.split("@")[0] for r in requests)

    took_nowcasts = Counter(p.name for p in procs if "general" in p.name
                            for _ in re.findall(r"Task fairvalue\.nowcast\[[^\]]+\] succeeded", p.log.read_text()))
    print("nowcasts by worker:", dict(took_nowcasts), "trainings by worker:", dict(trained_by))
    assert set(took_nowcasts) == {"scale-general-1", "scale-general-2"}
    assert set(trained_by) == {"scale-training-1", "scale-training-2"}
