"""Redis restarts with messages queued, on a private redis-server (the shared one stays up).

Without AOF the queued message is gone after the restart; with AOF (appendfsync always, as
docker-compose runs Redis) it survives. Either way PostgreSQL holds the request, and the sweep
(beat's hourly `fairvalue.training.sweep`) republishes what the broker lost."""

from __future__ import annotations

import time

import pytest
from kombu.exceptions import OperationalError
from sqlalchemy import text
from sqlmodel import select

from fairvalue import lifecycle
from storage.db import get_engine, session_scope
from storage.tables import ModelVersion, PromotionDecision, TaskRun, TrainingRequest
from tasks import queues
from tasks.names import SWEEP, TRAIN
from tests.faults.servers import PrivateRedis
from tests.realparts import QUICK, celery_app_for, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration


def publish_to(app, request_id: int) -> None:
    """tasks.lifecycle.publish_training, on the private broker."""
    app.send_task(TRAIN, args=[request_id], queue=queues.TRAINING)
    lifecycle.mark_published(request_id)


def request(request_id: int) -> TrainingRequest:
    with session_scope() as session:
        return session.get(TrainingRequest, request_id)


def test_redis_restarts_with_training_requests_queued(seeded, tmp_path):
    """Afterwards: both requests are decided and each was trained exactly once (attempts 1, one
    version, one decision): the one whose message a restart without AOF lost (republished by
    the sweep) and the one whose message survived a restart with AOF (and was republished by
    the sweep as well: that duplicate did nothing)."""
    server = PrivateRedis(tmp_path / "redis", appendonly=False).start()
    try:
        app = celery_app_for(server.url)
        lost = lifecycle.enqueue_retrain("redis restart without AOF", QUICK).request_id
        publish_to(app, lost)
        assert server.client().llen(queues.TRAINING) == 1
        server.crash()
        server.start()
        assert server.client().llen(queues.TRAINING) == 0  # gone with the process

        server.client().config_set("appendonly", "yes")  # as docker-compose runs it
        wait_for(lambda: server.client().info("persistence")["aof_rewrite_in_progress"] == 0, timeout=30)
        server.appendonly = True
        kept = lifecycle.enqueue_retrain("redis restart with AOF", QUICK).request_id
        publish_to(app, kept)
        server.crash()
        server.start()
        assert server.client().llen(queues.TRAINING) == 1  # replayed from the AOF

        # A worker on the restarted broker; the sweep treats any unclaimed published request as
        # possibly lost (FAIRVALUE_SWEEP_STALE_MINUTES=0 instead of waiting 30 minutes).
        env = {"FAIRVALUE_BROKER_URL": server.url, "FAIRVALUE_SWEEP_STALE_MINUTES": "0"}
        worker = start_worker("redis-restarted", "default,training", tmp_path, env)
        try:
            app.send_task("fairvalue.training.sweep", queue=queues.DEFAULT)  # what beat sends hourly
            wait_for(lambda: request(lost).state == request(kept).state == "decided", timeout=240)
            wait_for(lambda: server.client().llen(queues.TRAINING) == 0, timeout=60)  # duplicates consumed
        finally:
            stop_worker(worker)
    finally:
        server.stop()

    for request_id in (lost, kept):
        done = request(request_id)
        assert done.attempts == 1
        with session_scope() as session:
            versions = session.exec(select(ModelVersion).where(ModelVersion.id == done.model_version_id)).all()
            decisions = session.exec(select(PromotionDecision)
                                     .where(PromotionDecision.training_request_id == request_id)).all()
        assert len(versions) == 1 and len(decisions) == 1


def run_of(task_id: str) -> TaskRun | None:
    with session_scope() as session:
        return session.exec(select(TaskRun).where(TaskRun.task_id == task_id)).first()


@pytest.mark.parametrize("pool", ["prefork", "solo"])
@pytest.mark.usefixtures("leaves_nothing_queued")  # its request, published to a broker that is gone
def test_worker_send_waits_out_a_redis_restart(seeded, tmp_path, pool):
    """A worker's send tries again while the broker is gone (FAIRVALUE_BROKER_SEND_RETRIES): the
    sweep, held on a lock until Redis is down, reaches its send of a training request during the
    outage and publishes it once Redis is back, about 2 s later; its run ends ok. The same kind
    of send from this process, which sends as the API does, fails at once. Prefork as production
    runs workers (the task runs in a child); solo, where the send goes over a connection opened
    before the outage and kombu's reconnect closed the channel under it (tasks.app.FairvalueCelery)."""
    server = PrivateRedis(tmp_path / "redis", appendonly=False).start()
    worker = start_worker("redis-blip", queues.DEFAULT, tmp_path,
                          {"FAIRVALUE_BROKER_URL": server.url, "FAIRVALUE_SWEEP_STALE_MINUTES": "0"}, pool=pool)
    try:
        app = celery_app_for(server.url)
        waiting = lifecycle.enqueue_retrain("sent during a redis restart", QUICK).request_id  # never published
        with get_engine().connect() as lock:
            # The sweep reads the training requests only once its run is recorded: it waits here.
            lock.execute(text("LOCK TABLE training_requests IN ACCESS EXCLUSIVE MODE"))
            sweep_id = app.send_task(SWEEP, queue=queues.DEFAULT).id
            wait_for(lambda: run_of(sweep_id), timeout=60)
            server.crash()
            started = time.monotonic()
            with pytest.raises(OperationalError):
                app.send_task(SWEEP, queue=queues.DEFAULT)
            assert time.monotonic() - started < 3  # the API's kind of send does not wait
            lock.rollback()  # the sweep goes on to its send, with Redis down
        time.sleep(2)
        server.start()
        run = wait_for(lambda: (r := run_of(sweep_id)) and r.status != "running" and r, timeout=60)
        assert run.status == "ok", run.detail
        assert waiting in run.detail["republished"]
        assert request(waiting).published_at is not None
        assert server.client().llen(queues.TRAINING) == len(run.detail["republished"])  # on the restarted Redis
    finally:
        stop_worker(worker)
        server.stop()
