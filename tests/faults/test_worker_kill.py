"""SIGKILL a worker in the middle of its task.

The Redis visibility timeout is shortened for the workers started here (production: 2 h), so
the broker hands a dead worker's unacknowledged message to another worker within the test."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from sqlalchemy import func
from sqlmodel import select

from fairvalue import lifecycle
from storage.artifacts import get_store
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.registry import CHAMPION, get_alias, load_model
from storage.snapshots import published_snapshot
from storage.tables import (
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    PromotionDecision,
    TaskRun,
    TrainingRequest,
    utcnow,
)
from tasks.app import app
from tasks.lifecycle import publish_training
from tasks.names import SWEEP, TRAIN
from tasks.queues import TRAINING
from tests.realparts import (
    acknowledge,
    broker_messages,
    no_other_nowcast_pending,
    served_from,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

REDELIVER = {"FAIRVALUE_BROKER_TRANSPORT_OPTIONS": json.dumps(
    {"visibility_timeout": 8, "unacked_restore_interval": 1, "unacked_restore_throttle": 1})}
LEASE = 12  # seconds: a killed trainer's claim runs out within the test


def runs(task_id: str) -> list[TaskRun]:
    with session_scope() as session:
        return list(session.exec(select(TaskRun).where(TaskRun.task_id == task_id).order_by(TaskRun.id)).all())


def published():
    with session_scope() as session:
        return published_snapshot(session, ensure_collection(session, "cryptopunks"))


def test_a_worker_killed_mid_nowcast(seeded, client, tmp_path):
    """Afterwards: readers kept the previous snapshot while the run was dead; the message was
    not lost (the broker gave it to another worker, which published); the new snapshot values
    every item exactly once; the dead run's half-built snapshot, if any, was never published."""
    env = {**REDELIVER}
    # An earlier test's promotion asks for a nowcast, which the session's general worker (when one
    # runs) would publish in the middle of this one: every snapshot after `before` must be this test's.
    wait_for(no_other_nowcast_pending, timeout=120)
    before = published()
    # Snapshots made before this test may outnumber the published one (two concurrent nowcasts: the
    # one with the later moment holds the pointer, whatever its id), so this test's are counted from here.
    with session_scope() as session:
        last_made = session.exec(select(func.max(NowcastSnapshot.id))).one()
    first = start_worker("nowcast-victim", "faults-nowcast", tmp_path, env)
    task_id = app.send_task("fairvalue.nowcast", queue="faults-nowcast").id
    wait_for(lambda: runs(task_id), timeout=60, interval=0.05)
    time.sleep(0.3)  # into the run: loading the champion and the market takes longer than this
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert [r.status for r in runs(task_id)] == ["running"]
    assert published().id == before.id
    assert client.get("/v1/items/7804").json()["snapshot"]["id"] == before.id

    second = start_worker("nowcast-heir", "faults-nowcast", tmp_path, env)
    try:
        wait_for(lambda: any(r.status == "ok" for r in runs(task_id)), timeout=120)
    finally:
        stop_worker(second)

    after = published()
    assert after.id != before.id and after.as_of > before.as_of
    assert [r.status for r in runs(task_id)] == ["running", "ok"]  # the same message, delivered twice
    with session_scope() as session:
        n_rows, n_keys = session.exec(select(func.count(), func.count(func.distinct(NowcastRow.item_key)))
                                      .where(NowcastRow.snapshot_id == after.id)).one()
        orphans = session.exec(select(NowcastSnapshot.status).where(
            NowcastSnapshot.id > last_made, NowcastSnapshot.id != after.id,
            NowcastSnapshot.model_version_id == after.model_version_id, NowcastSnapshot.status != "shadow")).all()
    assert n_rows == n_keys == after.n_items == 10_000
    assert all(status in ("building", "superseded") for status in orphans), orphans
    served_from(client, after.id)


def held_from(queue: str) -> dict[bytes, dict]:
    """The messages routed to `queue` that a worker holds and has not acknowledged, by delivery tag."""
    return {m["tag"]: m for m in broker_messages(queue) if m["where"] == "delivered" and m["queue"] == queue}


def states(request_id: int) -> TrainingRequest:
    with session_scope() as session:
        return session.get(TrainingRequest, request_id)


def test_a_worker_killed_mid_training(seeded, tmp_path):
    """Afterwards: the request was trained exactly once to the end (one version, one decision),
    by the second worker, although its message reached that worker twice (the broker's
    redelivery of the dead worker's message and the sweep's republish); the champion alias
    points at a version whose artifact verifies."""
    env = {"FAIRVALUE_TRAINING_LEASE_SECONDS": str(LEASE), **REDELIVER}
    started = utcnow()
    first = start_worker("trainer-victim", "training", tmp_path, env)
    # Small boosting budgets (three quantile models, no linear blend): a training still takes
    # seconds (the champion's recipe is refitted for the gates), far longer than the 0.5 s it
    # takes to see it running and kill it.
    request_id = lifecycle.enqueue_retrain("kill test", {"max_iter": 8, "band_max_iter": 4, "band_method": "premium",
                                                         "linear_weight": 0.0}).request_id
    publish_training(request_id)
    wait_for(lambda: states(request_id).state == "training", timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert states(request_id).claimed_by.startswith("trainer-victim@")

    second = start_worker("trainer-heir", "training", tmp_path, env)
    try:
        # The lease runs out; the sweep finds the request and republishes it (as beat's hourly
        # sweep does), while the broker also redelivers the dead worker's own message.
        wait_for(lambda: request_id in lifecycle.requests_to_republish(), timeout=LEASE * 3)
        publish_training(request_id)
        wait_for(lambda: states(request_id).state == "decided", timeout=300)
    finally:
        stop_worker(second)
    done = states(request_id)
    assert done.claimed_by.startswith("trainer-heir@")
    assert done.attempts == 2  # the dead claim and the one that finished; never a third
    with session_scope() as session:
        made = session.exec(select(ModelVersion).where(ModelVersion.id == done.model_version_id)).all()
        decisions = session.exec(select(PromotionDecision)
                                 .where(PromotionDecision.training_request_id == request_id)).all()
        champion = get_alias(session, ensure_collection(session, "cryptopunks"), CHAMPION)
    assert len(made) == 1 and len(decisions) == 1
    assert load_model(get_store(), champion) is not None  # sha256 verified
    with session_scope() as session:
        train_runs = [r for r in session.exec(select(TaskRun).where(TaskRun.task_name == TRAIN)
                                              .where(TaskRun.started_at >= started)).all()
                      if r.detail.get("request_id") == request_id]
    # Two deliveries at least reached the heir: one trained, the others found the request claimed
    # (the broker's redelivery may come while the dead claim's lease still runs: it sends itself
    # again for after the lease) or decided, and did nothing. (The victim's run never recorded its
    # detail: it was killed.)
    assert len(train_runs) >= 2, [(r.status, r.detail) for r in train_runs]
    assert sum("decision" in r.detail for r in train_runs) == 1
    assert all("decision" in r.detail or str(r.detail.get("skipped", "")).startswith("not claimable")
               for r in train_runs), [(r.status, r.detail) for r in train_runs]


def test_a_training_worker_killed_whole_and_restarted_trains_its_request_a_lease_later(seeded, tmp_path):
    """Killed whole (its main process too), a training worker's message waits out the broker's
    visibility timeout (2 h in production, kept here) and only beat's hourly sweep republished its
    request. Restarted, the worker asks for one sweep of its own, on its own queue, for once a lease
    has run out (FAIRVALUE_TRAINING_START_SWEEP): the request is trained then, by the restarted
    worker, with no sweep from anyone else and no redelivery."""
    env = {"FAIRVALUE_TRAINING_LEASE_SECONDS": str(LEASE), "FAIRVALUE_TRAINING_START_SWEEP": "true"}
    started = utcnow()
    held_before = held_from(TRAINING)
    victim = start_worker("trainer-killed-whole", "training", tmp_path, env)
    request_id = lifecycle.enqueue_retrain("killed whole", {"max_iter": 8, "band_max_iter": 4,
                                                            "band_method": "premium", "linear_weight": 0.0}).request_id
    publish_training(request_id)
    wait_for(lambda: states(request_id).state == "training", timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # What the victim held (its request's message, and its own sweep, held for its countdown) stays
    # in the broker's unacked hash for the visibility timeout, 2 h: acknowledged at the end here, or
    # later files see a training message no worker holds (test_training_duplicates.py waits until
    # there is none, and waited out its 300 s), and a training worker running in 2 h is given it.
    held_by_the_victim = [m for tag, m in held_from(TRAINING).items() if tag not in held_before]
    assert held_by_the_victim  # its request's message at least: the worker was training it

    restarted = start_worker("trainer-killed-whole", "training", tmp_path, env)  # the same worker, back
    try:
        wait_for(lambda: states(request_id).state == "decided", timeout=LEASE * 3 + 120)
    finally:
        stop_worker(restarted)
        acknowledge(held_by_the_victim)
    done = states(request_id)
    assert done.attempts == 2 and done.model_version_id is not None  # the dead claim, then the restarted one's
    with session_scope() as session:
        sweeps = [r.detail for r in session.exec(select(TaskRun).where(TaskRun.task_name == SWEEP,
                                                                      TaskRun.started_at >= started)).all()]
    assert any(request_id in detail.get("republished", []) for detail in sweeps), sweeps


def test_a_pool_child_killed_mid_training(seeded, tmp_path):
    """A prefork pool child killed under a training (out of memory, say): the pool requeues its
    message at once (reject_on_worker_lost), while the dead claim's lease still runs. That
    delivery records a skipped run and sends itself again for just after the lease runs out, and
    the request is trained then, with no sweep: about a lease after the kill, not up to an hour
    after the lease (the message used to be acked as `ok` and the request left `training`)."""
    env = {"FAIRVALUE_TRAINING_LEASE_SECONDS": str(LEASE)}
    started = utcnow()
    trainer = start_worker("trainer-pool", "training", tmp_path, env, pool="prefork", concurrency=1)
    try:
        request_id = lifecycle.enqueue_retrain("pool child kill test", {
            "max_iter": 8, "band_max_iter": 4, "band_method": "premium", "linear_weight": 0.0}).request_id
        publish_training(request_id)
        wait_for(lambda: states(request_id).state == "training", timeout=60)
        holder = states(request_id).claimed_by
        assert holder.startswith("trainer-pool@")
        os.kill(int(holder.split("/")[1]), signal.SIGKILL)  # the claim token names the pool child's pid
        wait_for(lambda: states(request_id).state == "decided", timeout=LEASE * 2 + 240)
    finally:
        stop_worker(trainer)
    done = states(request_id)
    assert done.claimed_by != holder and done.attempts == 2
    with session_scope() as session:
        train_runs = [r for r in session.exec(select(TaskRun).where(TaskRun.task_name == TRAIN)
                                              .where(TaskRun.started_at >= started)).all()
                      if r.detail.get("request_id") == request_id]
    turned_away = [r for r in train_runs if "send_again_in" in r.detail]
    assert turned_away and all(r.status == "skipped" for r in turned_away), [(r.status, r.detail) for r in train_runs]
    assert holder in turned_away[0].detail["skipped"]
    assert sum("decision" in r.detail for r in train_runs) == 1
