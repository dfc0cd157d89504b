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


@pytest.fixture(scope="session")
def worker(seeded, broker, tmp_path_factory):
    """A real Celery worker process on every queue, against the Redis broker."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "default,ingest,nowcast,training",
             "-c", "1", "--pool", "solo", "-n", "test-worker@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=os.environ.copy(), stdout=fh, stderr=subprocess.STDOUT,
        )
    from tasks.app import app

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if app.control.inspect(timeout=1).ping():
            break
    else:
        proc.kill()
        pytest.fail(f"worker did not answer ping within 60 s:\n{log.read_text()[-3000:]}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    if os.environ.get("CI"):
        print(log.read_text()[-5000:])


@pytest.fixture(scope="session")
def client(seeded):
    from starlette.testclient import TestClient

    from api.app import app

    with TestClient(app) as c:
        yield c
