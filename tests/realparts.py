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
from pathlib import Path

import pytest
import redis

from tests.conftest import PG_ADMIN_URL, REDIS_URL, S3_SOCKET, TEST_DB, TEST_DB_PREFIX, renew_redis_claim

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
    client.flushdb()
    renew_redis_claim(client)  # the flush took it; tests/conftest.py says why it is there
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


def wait_for(predicate, timeout=300.0, interval=0.5):
    """Poll until `predicate()` is truthy (and return it), or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


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


@pytest.fixture()
def operator_headers(monkeypatch):
    """An Authorization header with a valid operator token (the bootstrap one, set for the test):
    public reads show operators' names and workers' hosts only to such a caller."""
    from pydantic import SecretStr

    from fairvalue.settings import get_settings

    monkeypatch.setattr(get_settings(), "operator_token", SecretStr("realparts-operator-token"))
    return {"Authorization": "Bearer realparts-operator-token"}
