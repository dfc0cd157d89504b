"""Real parts for integration and fault tests: PostgreSQL, Redis, an S3 endpoint and Celery
workers running as their own processes, exactly as `fairvalue worker` would.

A pytest plugin (registered in tests/conftest.py), so tests/integration and tests/faults share
one session database, one moto server and one seeded market."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.conftest import PG_ADMIN_URL, REDIS_URL, S3_SOCKET, TEST_DB, TEST_DB_PREFIX, empty_keeping_claim

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database():
    """A fresh PostgreSQL database, migrated to head. The databases of killed sessions on this
    host go first (storage.scratch)."""
    from storage import scratch

    scratch.drop_abandoned(PG_ADMIN_URL, TEST_DB_PREFIX)
    scratch.create(PG_ADMIN_URL, TEST_DB)
    from storage.migrate import upgrade

    upgrade()
    yield os.environ["FAIRVALUE_DATABASE_URL"]
    from storage.db import get_engine

    get_engine().dispose()
    scratch.drop(PG_ADMIN_URL, TEST_DB)


@pytest.fixture(scope="session")
def broker():
    client = redis.Redis.from_url(REDIS_URL)
    empty_keeping_claim(client)  # of what this session's tests left before the first one to use it
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server, as ThreadedMotoServer runs it, on the socket tests/conftest.py bound."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True,
                         request_handler=MotoRequestHandler, fd=S3_SOCKET.fileno())
    threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True).start()
    from storage.artifacts import get_store

    store = get_store()
    store.ensure_bucket()
    yield store
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def seeded(database, s3):
    """The bundled market loaded, a champion trained and a first snapshot published."""
    from fairvalue import pipeline
    from fairvalue.settings import Settings, get_settings

    seed_report = pipeline.seed()
    # The learning curve as production builds it (the test environment's other trainings build none).
    train_result = pipeline.train(get_settings().model_copy(
        update={"learning_curve_splits": Settings.model_fields["learning_curve_splits"].default}))
    nowcast_result = pipeline.nowcast()
    return {"seed": seed_report, "train": train_result, "nowcast": nowcast_result}


# A training request's small budget, for tests of the plumbing (claims, leases, the sweep, the
# decision on record), not the model: the premium band alone and no linear blend fit three quantile
# models instead of four plus a ridge, 4.2 s a training instead of 6.7 s (one core). The gates
# reject it against the session champion (|bias| 0.09) as they did the four-model one.
QUICK = {"max_iter": 8, "band_max_iter": 4, "band_method": "premium", "linear_weight": 0.0}


def wait_for(predicate, timeout=300.0, interval=0.5):
    """Poll until `predicate()` is truthy (and return it), or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def no_other_nowcast_pending() -> bool:
    """No nowcast is held (an ETA) or run by any worker, and none waits in the shared queue: one
    queued by an earlier test's promotion goes. It would have waited for this test's own workers
    (the session has none on the queue when another test process ran the file whose workers took
    it in a lone session) and published in the middle of this test. For wait_for, before a test
    moves the published pointer and reads it back."""
    from tasks import queues
    from tasks.app import app

    if _nowcast_held():
        return False
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queues.NOWCAST)
    return not _nowcast_held()  # none taken between the look and the purge


def _nowcast_held() -> bool:
    from tasks.app import app

    inspect = app.control.inspect(timeout=1)
    for answer in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        for tasks in (answer or {}).values():
            if any("fairvalue.nowcast" in (task.get("name"), task.get("request", {}).get("name")) for task in tasks):
                return True
    return False


def served_from(client, snapshot_id: int, path: str = "/v1/items/7804") -> dict:
    """The API's answer at `path` once it serves `snapshot_id`. A snapshot published by another
    process (a worker) is served within FAIRVALUE_API_SNAPSHOT_CHECK_SECONDS of its commit (the
    API holds the published snapshot; README, API), so a read right after a worker's publish
    may still see the one before. Fails if the bound (plus slack for a loaded host) passes."""
    from fairvalue.settings import get_settings

    bound = get_settings().api_snapshot_check_seconds + 5.0
    return wait_for(lambda: (body := client.get(path).json())["snapshot"]["id"] == snapshot_id and body,
                    timeout=bound, interval=0.05)


def dies_with_tests(command: list[str], on_death: str = "KILL") -> list[str]:
    """`command` run so that it gets SIG`on_death` when this test process dies (tests/orphan_guard.py)."""
    return [sys.executable, str(ROOT / "tests" / "orphan_guard.py"), f"--signal={on_death}", str(os.getpid()),
            *command]


def spawn_worker(name: str, queues: str, log_dir: Path, env: dict | None = None, pool: str = "solo",
                 concurrency: int = 1) -> subprocess.Popen:
    """Start a real Celery worker process, as `fairvalue worker` runs it (see start_worker)."""
    log = log_dir / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            dies_with_tests([sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", queues,
                             "-c", str(concurrency), "--pool", pool,
                             "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]),
            # One OpenMP thread per worker: several workers share these 2 cores, and OpenMP
            # threads spinning against each other slow training several-fold.
            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=fh, stderr=subprocess.STDOUT,
        )
    proc.name, proc.log = name, log
    proc.broker_url = (env or {}).get("FAIRVALUE_BROKER_URL")
    return proc


def celery_app_for(broker_url: str | None):
    """The test process's Celery app, or one on another broker (a private Redis)."""
    from tasks.app import app, create_app

    if not broker_url:
        return app
    from fairvalue.settings import get_settings

    return create_app(get_settings().model_copy(update={"broker_url": broker_url}))


def await_workers(procs: list[subprocess.Popen], timeout: float = 90) -> list[subprocess.Popen]:
    """Return once every worker answers a ping (started together, they boot in parallel)."""
    waiting = {p.name: p for p in procs}
    deadline = time.time() + timeout
    while waiting and time.time() < deadline:
        for proc in waiting.values():
            if proc.poll() is not None:
                pytest.fail(f"worker {proc.name} exited with {proc.returncode}:\n{proc.log.read_text()[-3000:]}")
        for url in {p.broker_url for p in waiting.values()}:
            names = [n for n, p in waiting.items() if p.broker_url == url]
            # Pinged by node name (`-n name@%h`, %h the host name) with a limit of replies: the
            # ping returns as soon as they all answered, not after its whole timeout.
            nodes = [f"{name}@{socket.gethostname()}" for name in names]
            replies = celery_app_for(url).control.inspect(timeout=1, destination=nodes, limit=len(nodes)).ping() or {}
            for name in names:
                if any(node.startswith(f"{name}@") for node in replies):
                    del waiting[name]
    if waiting:
        for proc in waiting.values():
            proc.kill()
        logs = "\n".join(f"{p.name}: {p.log.read_text()[-2000:]}" for p in waiting.values())
        pytest.fail(f"workers {sorted(waiting)} did not answer ping within {timeout} s:\n{logs}")
    return procs


def start_worker(name: str, queues: str, log_dir: Path, env: dict | None = None, pool: str = "solo",
                 concurrency: int = 1) -> subprocess.Popen:
    """A real Celery worker process, as `fairvalue worker` runs it; returns once it answers a ping."""
    return await_workers([spawn_worker(name, queues, log_dir, env, pool, concurrency)])[0]


def stop_worker(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if os.environ.get("CI"):
        print(proc.log.read_text()[-5000:])


@pytest.fixture(scope="session")
def worker(seeded, broker, tmp_path_factory):
    """The general worker (default, ingest, nowcast queues), as in production."""
    proc = start_worker("test-worker", "default,ingest,nowcast", tmp_path_factory.mktemp("worker"))
    yield proc
    stop_worker(proc)


@pytest.fixture
def own_refusal_cap(monkeypatch):
    """A cap of its own on recorded unsigned webhook refusals: an earlier test within the same
    minute (schemathesis posts unsigned to every webhook) may have spent the shared one, and a
    refusal past the cap is answered but not recorded."""
    from api import webhooks
    from api.limits import MemoryCounter

    monkeypatch.setattr(webhooks, "unauthenticated_refusals",
                        webhooks.UnauthenticatedRefusals(counter_factory=MemoryCounter))


@pytest.fixture(scope="session")
def client(seeded):
    from starlette.testclient import TestClient

    from api.app import app

    with TestClient(app) as c:
        yield c


def database_before(revision: str, tmp_path: Path, sales: list[dict]):
    """(url, engine) of a SQLite database migrated only to `revision`, holding the cryptopunks
    collection and `sales` (event_id, ts; optional seller, buyer, source) of item 7 at 90: what an
    upgrade from that revision finds. The caller upgrades it and disposes of the engine."""
    import sqlalchemy as sa

    from storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, revision)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO collections (id, slug, name, kind, currency, created_at) "
                             "VALUES (1, 'cryptopunks', 'CryptoPunks', 'unique_items', 'ETH', '2021-01-01')"))
        for sale in sales:
            conn.execute(sa.text(
                "INSERT INTO sales (collection_id, event_id, item_key, ts, price, seller, buyer, source, content_hash, "
                "ingested_at) VALUES (1, :event_id, '7', :ts, 90, :seller, :buyer, :source, 'h', '2021-12-31')"),
                {"seller": "", "buyer": "", "source": "test", **sale})
    return url, engine


@pytest.fixture
def tokens_to_revoke(database):
    """Names of the operator tokens a test creates: each one still active when the test ends, a
    failure part-way included, is revoked then. A token left active turns every later file's
    "no operator token is active" into another answer."""
    names: list[str] = []
    yield names
    from storage import tokens
    from storage.db import session_scope

    with session_scope() as session:
        for name in names:
            tokens.revoke(session, name)  # False when the test revoked it itself


@pytest.fixture()
def operator_headers(monkeypatch):
    """An Authorization header with a valid operator token (the bootstrap one, set for the test):
    public reads show operators' names and workers' hosts only to such a caller."""
    from pydantic import SecretStr

    from fairvalue.settings import get_settings

    monkeypatch.setattr(get_settings(), "operator_token", SecretStr("realparts-operator-token"))
    return {"Authorization": "Bearer realparts-operator-token"}


def finished_run(task_id: str, timeout: float = 120.0):
    """The TaskRun a worker recorded for the message `task_id` (app.send_task(...).id), once ended."""
    from sqlmodel import select

    from storage.db import session_scope
    from storage.tables import TaskRun

    def ended():
        with session_scope() as session:
            return session.exec(select(TaskRun).where(TaskRun.task_id == task_id, TaskRun.status != "running")).first()

    return wait_for(ended, timeout=timeout, interval=0.2)


def broker_messages(queue: str) -> list[dict]:
    """The task messages the session's Redis holds: those waiting in `queue`, then every one
    delivered to a worker and not acknowledged (kombu's `unacked` hash: running, reserved, or held
    for its countdown; tasks are acked late), each as {"where", "id", "task", "args", "headers",
    "queue", "tag", "raw"} (`queue`: the one it was routed to; `tag`: a delivered one's delivery tag,
    its key in `unacked`). Read in the order a message moves, so one a worker takes between the two
    reads is seen by the second."""
    import base64
    import json

    client = redis.Redis.from_url(REDIS_URL)
    found = [("waiting", None, queue, raw, json.loads(raw)) for raw in client.lrange(queue, 0, -1)]
    for tag, raw in client.hgetall("unacked").items():
        message, _exchange, routing_key = json.loads(raw)  # kombu keeps [message, exchange, routing key]
        found.append(("delivered", tag, routing_key, raw, message))
    messages = []
    for where, tag, routed_to, raw, message in found:
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        messages.append({"where": where, "id": message["headers"].get("id"), "task": message["headers"].get("task"),
                         "args": args, "headers": message["headers"], "queue": routed_to, "tag": tag, "raw": raw})
    return messages


def training_messages(request_id: int, timeout: float = 60.0) -> list[dict]:
    """The broker's messages (broker_messages) that train `request_id`, but for those of its runs
    that ended, once they are acknowledged (acked late, a message leaves `unacked` just after its run
    is recorded): what else was sent for it. Looked at twice half a second apart: a worker taking a
    message holds it in neither place for a moment (BRPOP, then its record in `unacked`), and one
    the first look missed so is seen by the second. Read the request's runs after this: a message
    acked meanwhile has its run recorded by then."""
    from sqlmodel import select

    from storage.db import session_scope
    from storage.tables import TaskRun
    from tasks import names, queues

    def held() -> dict[str, dict]:
        return {m["id"]: m for m in broker_messages(queues.TRAINING)
                if m["task"] == names.TRAIN and m["args"][:1] == [request_id]}

    def ended() -> set[str]:
        with session_scope() as session:
            runs = session.exec(select(TaskRun.task_id, TaskRun.detail)
                                .where(TaskRun.task_name == names.TRAIN, TaskRun.status != "running")).all()
        return {task_id for task_id, detail in runs if (detail or {}).get("request_id") == request_id}

    wait_for(lambda: not set(held()) & ended(), timeout=timeout, interval=0.2)
    seen = held()
    time.sleep(0.5)
    return list({**seen, **held()}.values())


def take_back(queue: str, messages: list[dict]) -> int:
    """Remove these messages from `queue` where they still wait; how many were."""
    client = redis.Redis.from_url(REDIS_URL)
    return sum(client.lrem(queue, 1, m["raw"]) for m in messages if m["where"] == "waiting")


def acknowledge(messages: list[dict]) -> None:
    """Acknowledge these delivered messages (broker_messages' "delivered") as kombu's Redis
    transport does: out of `unacked` and its index. For a worker killed whole, which never will:
    left, they stay for the visibility timeout (2 h), and a later file's worker is given them."""
    tags = [m["tag"] for m in messages if m["where"] == "delivered"]
    if tags:
        client = redis.Redis.from_url(REDIS_URL)
        client.pipeline().zrem("unacked_index", *tags).hdel("unacked", *tags).execute()


def set_aside(request_id: int) -> None:
    """A test's training request that no worker should train: failed, saying so, and its
    idempotency key freed, so a policy run later the same day files a request of its own."""
    from storage.db import session_scope
    from storage.tables import TrainingRequest

    with session_scope() as session:
        request = session.get(TrainingRequest, request_id)
        request.state, request.error = "failed", "test: not meant to train"
        request.idempotency_key = f"{request.idempotency_key}:set-aside-{request_id}"
        session.add(request)


@contextmanager
def nothing_left_queued():
    """What is published inside it that nothing consumes (a retrain, a promote's nowcast, an
    ingest's follow-up, or one a test's own worker sent on) does not outlive it: each message that
    came to wait in a queue the session's workers consume is taken back, and each training request
    made meanwhile that is still queued is set aside. Left, they waited for a later file's workers:
    its training worker trained them in the middle of its tests, the general worker published
    their nowcasts over its reads, and results depended on the order of the files. What waited
    before is left, and messages a worker already took are its to finish."""
    from sqlalchemy import func
    from sqlmodel import select

    from storage import requests
    from storage.db import session_scope
    from storage.tables import TrainingRequest
    from tasks import queues

    def waiting() -> dict[str, list[dict]]:
        return {queue: [m for m in broker_messages(queue) if m["where"] == "waiting"] for queue in queues.ALL}

    before = {m["id"] for messages in waiting().values() for m in messages}
    with session_scope() as session:
        last_before = session.exec(select(func.max(TrainingRequest.id))).one() or 0
    try:
        yield
    finally:
        for queue, messages in waiting().items():
            take_back(queue, [m for m in messages if m["id"] not in before])
        with session_scope() as session:
            queued = session.exec(select(TrainingRequest.id).where(TrainingRequest.id > last_before,
                                                                   TrainingRequest.state == requests.QUEUED)).all()
        for request_id in queued:
            set_aside(request_id)


@pytest.fixture
def leaves_nothing_queued(database):
    """The test runs inside nothing_left_queued(): for a file whose workers do not consume what it publishes."""
    with nothing_left_queued():
        yield


@contextmanager
def champion_data_end(before_last_sale: timedelta, made_at: datetime | None = None):
    """The champion's training data made to end `before_last_sale` before the newest clean sale,
    and the champion made at `made_at`, or else after every stored sale (restored after): what
    the age trigger counts as new since its training (other tests store sales after the
    session's champion was made), and how old it finds the champion."""
    from sqlalchemy import func
    from sqlmodel import select

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from storage.db import session_scope
    from storage.registry import CHAMPION, get_alias
    from storage.tables import ModelVersion, Sale

    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, get_settings())
        champion = get_alias(session, coll, CHAMPION)
        kept = champion.data_end, champion.created_at
        last = session.exec(select(func.max(Sale.ts)).where(Sale.collection_id == coll.id,
                                                           Sale.wash_reason.is_(None))).one()
        stored = session.exec(select(func.max(Sale.ingested_at)).where(Sale.collection_id == coll.id)).one()
        champion.data_end = last - before_last_sale
        champion.created_at = made_at or stored + timedelta(seconds=1)
        session.add(champion)
    try:
        yield
    finally:
        with session_scope() as session:
            champion = session.get(ModelVersion, champion.id)
            champion.data_end, champion.created_at = kept
            session.add(champion)


def waits_on_a_lock(backend_pid, timeout: float = 30.0) -> bool:
    """Whether the PostgreSQL backend whose pid `backend_pid()` gives (None until another thread
    knows it) came to wait on a lock within `timeout` seconds: pg_stat_activity, polled from a
    connection of its own, one transaction a look (a transaction sees the activity it first read)."""
    from sqlalchemy import text

    from storage.db import get_engine

    deadline = time.time() + timeout
    with get_engine().connect() as watch:
        while time.time() < deadline:
            pid = backend_pid()
            waiting = pid is not None and watch.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
            watch.rollback()
            if waiting == "Lock":
                return True
            time.sleep(0.02)
    return False
