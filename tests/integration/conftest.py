"""Real parts for integration tests: PostgreSQL, Redis, an S3 endpoint and a Celery worker
running as its own process, exactly as `fairvalue worker` would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import PG_ADMIN_URL, REDIS_URL, S3_PORT, TEST_DB

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def database():
    """A fresh PostgreSQL database, migrated to head."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEST_DB}"')
    from storage.migrate import upgrade

    upgrade()
    yield os.environ["FAIRVALUE_DATABASE_URL"]
    from storage.db import get_engine

    get_engine().dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    from storage.artifacts import get_store

    store = get_store()
    store.ensure_bucket()
    yield store
    server.stop()


@pytest.fixture(scope="session")
def seeded(database, s3):
    """The bundled market loaded, a champion trained and a first snapshot published."""
    from fairvalue import pipeline

    seed_report = pipeline.seed()
    train_result = pipeline.train()
    nowcast_result = pipeline.nowcast()
    return {"seed": seed_report, "train": train_result, "nowcast": nowcast_result}


def start_worker(name: str, queues: str, log_dir: Path, env: dict | None = None, pool: str = "solo",
                 concurrency: int = 1) -> subprocess.Popen:
    """A real Celery worker process, as `fairvalue worker` runs it; returns once it answers a ping."""
    log = log_dir / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", queues, "-c", str(concurrency),
             "--pool", pool,
             "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            # One OpenMP thread per worker: several workers share these 2 cores, and OpenMP
            # threads spinning against each other slow training several-fold.
            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=fh, stderr=subprocess.STDOUT,
        )
    from tasks.app import app

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker {name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        replies = app.control.inspect(timeout=1).ping() or {}
        if any(node.startswith(f"{name}@") for node in replies):
            proc.log = log
            return proc
    proc.kill()
    pytest.fail(f"worker {name} did not answer ping within 60 s:\n{log.read_text()[-3000:]}")


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


@pytest.fixture(scope="session")
def client(seeded):
    from starlette.testclient import TestClient

    from api.app import app

    with TestClient(app) as c:
        yield c
