"""Shared test setup.

The environment is fixed here, before any project module reads its settings:
- a throw-away PostgreSQL database on the local server (created and dropped per session),
- Redis database 15 as the broker (flushed at start),
- an in-process moto S3 server as the artifact store,
- small models (few boosting rounds) so training takes seconds.
Unit tests never touch these; integration tests (tests/integration) do, through real processes.
"""

from __future__ import annotations

import os
import socket
import uuid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PG_ADMIN_URL = os.environ.get("FAIRVALUE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB = f"fairvalue_test_{uuid.uuid4().hex[:10]}"
REDIS_URL = os.environ.get("FAIRVALUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
S3_PORT = _free_port()

os.environ.update(
    {
        "FAIRVALUE_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB,
        "FAIRVALUE_BROKER_URL": REDIS_URL,
        "FAIRVALUE_ARTIFACTS_URL": "s3://fairvalue-test/artifacts",
        "FAIRVALUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "FAIRVALUE_TRAIN_MAX_ITER": "40",
        "FAIRVALUE_WEBHOOK_SECRET": "test-secret",
        # Tests hammer the API from one client; tests/integration/test_api_auth_limits.py turns it on.
        "FAIRVALUE_RATE_LIMIT_PER_MINUTE": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
# One OpenMP thread per test process: on a shared 2-core host, scikit-learn's default (one
# thread per core) spins at barriers and made a 40 s test file time out (bench/nowcast.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The real-parts fixtures (database, broker, s3, seeded, worker, client) for tests/integration and tests/faults.
pytest_plugins = ["tests.realparts"]
