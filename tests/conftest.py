"""Shared test setup.

The environment is fixed here, before any project module reads its settings:
- a throw-away PostgreSQL database on the local server (created and dropped per session),
- a Redis database of its own as the broker (15, or the next one down that no other session on
  this host holds; flushed at start),
- an in-process moto S3 server as the artifact store,
- small models (few boosting rounds) so training takes seconds.
Unit tests never touch these; integration tests (tests/integration) do, through real processes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from urllib.parse import urlparse

import redis

from storage import scratch  # reads no settings: safe before the environment below is fixed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PG_ADMIN_URL = os.environ.get("FAIRVALUE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB_PREFIX = "fairvalue_test_"
TEST_DB = scratch.new_name(TEST_DB_PREFIX)
SESSION_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
# Redis has no throw-away databases, so each test session claims one of these (key below, with a
# lease its heartbeat renews). Two sessions on one broker database take each other's messages,
# and one flushes the other's queues: that spoiled runs when a suite was started beside another.
REDIS_CLAIM_KEY = "fairvalue:test-session"
REDIS_CLAIM_SECONDS = 60
REDIS_TEST_DBS = range(15, 7, -1)
_claim: dict[str, redis.Redis] = {}  # the client holding this process's claim, while it holds it


def _claim_redis_db() -> str:
    """The broker URL of a Redis database no other live test session holds, claimed for this one.

    FAIRVALUE_TEST_REDIS_URL names one exactly (its claim must be free), counted down per test
    process (_for_this_process). Without a reachable Redis the default is returned unclaimed: unit
    tests never touch it, and the broker fixture fails loudly at its first command."""
    explicit = os.environ.get("FAIRVALUE_TEST_REDIS_URL")
    candidates = ([_for_this_process(explicit)] if explicit
                  else [f"redis://127.0.0.1:6379/{db}" for db in REDIS_TEST_DBS])
    try:
        for url in candidates:
            client = redis.Redis.from_url(url, socket_connect_timeout=2)
            if client.set(REDIS_CLAIM_KEY, SESSION_ID, nx=True, ex=REDIS_CLAIM_SECONDS):
                # What an earlier session left here (one that never used the broker fixture, or was
                # killed before its flush) would otherwise be this session's to consume.
                empty_keeping_claim(client)
                _keep_claim(client)
                return url
    except redis.ConnectionError:
        return candidates[0]
    holders = ", ".join(f"{url} by {redis.Redis.from_url(url).get(REDIS_CLAIM_KEY)!r}" for url in candidates)
    raise RuntimeError(f"every test Redis database is held by another test session ({holders}): "
                       "wait for those to end (a killed one lets go within a minute)")


def _for_this_process(url: str) -> str:
    """The database named, or, in pytest-xdist's second, third... test process (gw1, gw2...), the
    one that many below it: each process is a test session of its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    below = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    if not below:
        return url
    parsed = urlparse(url)
    db = int(parsed.path.strip("/") or 0) - below
    if db < 0:
        raise RuntimeError(f"FAIRVALUE_TEST_REDIS_URL {url} leaves no database for test process {worker}: "
                           "name one numbered at least the processes' count less one")
    return parsed._replace(path=f"/{db}").geturl()


def pytest_configure(config):
    """pytest-xdist's controller runs no test: the claim it made importing this file is given back,
    for its test processes (each makes its own) and for other suites on the host."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        release_redis_claim()


def release_redis_claim() -> None:
    client = _claim.pop("client", None)
    if client is not None and client.get(REDIS_CLAIM_KEY) == SESSION_ID.encode():
        client.delete(REDIS_CLAIM_KEY)


def empty_keeping_claim(client: redis.Redis) -> None:
    """Empty this session's Redis database but for its claim, which holds on: in one transaction,
    so no other session can claim the database between the flush and the claim's return."""
    with client.pipeline(transaction=True) as emptying:
        emptying.flushdb()
        emptying.set(REDIS_CLAIM_KEY, SESSION_ID, ex=REDIS_CLAIM_SECONDS)
        emptying.execute()


def renew_redis_claim(client: redis.Redis) -> None:
    """Hold this session's claim for another lease, unless another session holds it."""
    holder = client.get(REDIS_CLAIM_KEY)
    if holder in (None, SESSION_ID.encode()):
        client.set(REDIS_CLAIM_KEY, SESSION_ID, ex=REDIS_CLAIM_SECONDS)


def _keep_claim(client: redis.Redis) -> None:
    """Renew the claim while this process lives: a killed session lets go within a lease."""
    _claim["client"] = client

    def renew() -> None:
        while True:
            time.sleep(REDIS_CLAIM_SECONDS / 4)
            if "client" not in _claim:  # given back (release_redis_claim)
                return
            try:
                renew_redis_claim(client)
            except redis.RedisError:
                pass  # Redis restarting; the next beat tries again

    threading.Thread(target=renew, name="redis-test-claim", daemon=True).start()


def _listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


REDIS_URL = _claim_redis_db()
# The S3 server's socket, bound here since the endpoint below must be known now (the workers
# inherit it) and served from the first test that needs S3 on (realparts.s3): a port only picked
# here could be taken meanwhile (an outgoing connection's local port, another session's server).
S3_SOCKET = _listening_socket()
S3_PORT = S3_SOCKET.getsockname()[1]

os.environ.update(
    {
        "FAIRVALUE_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB,
        "FAIRVALUE_BROKER_URL": REDIS_URL,
        "FAIRVALUE_ARTIFACTS_URL": "s3://fairvalue-test/artifacts",
        "FAIRVALUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "FAIRVALUE_TRAIN_MAX_ITER": "40",
        # The band's four quantile models at 40 rounds each: the seeded champion's training took 63 s,
        # with 10 rounds 33 s (in-process on SQLite). The tests check the band's form, not its fit.
        "FAIRVALUE_TRAIN_BAND_MAX_ITER": "10",
        # Each learning-curve split adds two smaller fits to a training (3.0 s of a quick one's 10 s
        # under pyinstrument, in-process on SQLite). The session's first champion (realparts.seeded)
        # is trained with the default three splits, tests/unit/test_gate_window.py's gated training
        # with one; the others with none.
        "FAIRVALUE_LEARNING_CURVE_SPLITS": "0",
        "FAIRVALUE_WEBHOOK_SECRET": "test-secret",
        # Off but where tested (tests/faults/test_worker_kill.py): each training worker a test starts
        # would leave a sweep for a lease later, to run in the middle of some later test.
        "FAIRVALUE_TRAINING_START_SWEEP": "false",
        # Tests hammer the API from one client; tests/integration/test_api_auth_limits.py turns it on.
        "FAIRVALUE_RATE_LIMIT_PER_MINUTE": "0",
        # A listing's nowcast waits this long after the last one (120 s in production); the
        # listings' worker test would wait it out.
        "FAIRVALUE_LISTING_NOWCAST_MIN_SECONDS": "5",
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
