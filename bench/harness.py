"""What the bench scripts share: a scratch PostgreSQL database, an S3 endpoint (moto) or a
local artifact directory, child processes that report one JSON line, peak RSS, timing.

Every script creates its own database (`fairvalue_bench_<random>`) on the server of
FAIRVALUE_BENCH_PG_ADMIN_URL (default: postgres@127.0.0.1:5432) and drops it at the end,
even on error or Ctrl-C. Measurements run in child processes so that each one's peak RSS is
its own and a hung step is killed at its time limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FAIRVALUE_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB_PREFIX = "fairvalue_bench_"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` other processes spinning on the CPU meanwhile (a shared host's other work),
    killed on the way out."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def scratch_database(migrate: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head; its SQLAlchemy URL. Dropped afterwards, and
    those of killed bench runs on this host before it (storage.scratch)."""
    from storage import scratch

    scratch.drop_abandoned(PG_ADMIN_URL, BENCH_DB_PREFIX)
    name = scratch.new_name(BENCH_DB_PREFIX)
    scratch.create(PG_ADMIN_URL, name)
    url = "postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    try:
        if migrate:
            subprocess.run([sys.executable, "-c", "from storage.migrate import upgrade; upgrade()"],
                           cwd=ROOT, env={**os.environ, "FAIRVALUE_DATABASE_URL": url}, check=True, timeout=120)
        yield url
    finally:
        scratch.drop(PG_ADMIN_URL, name)


@contextlib.contextmanager
def artifact_store(kind: str) -> Iterator[dict[str, str]]:
    """Environment for the artifact store: `s3` (an in-process moto server) or `dir`."""
    if kind == "s3":
        from moto.server import ThreadedMotoServer

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        env = {"FAIRVALUE_ARTIFACTS_URL": "s3://fairvalue-bench/artifacts",
               "FAIRVALUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        try:
            import boto3

            boto3.client("s3", endpoint_url=env["FAIRVALUE_S3_ENDPOINT_URL"], region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(
                Bucket="fairvalue-bench")
            yield env
        finally:
            server.stop()
    else:
        with tempfile.TemporaryDirectory(prefix="fairvalue-bench-") as tmp:
            yield {"FAIRVALUE_ARTIFACTS_URL": tmp}


def run_child(args: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run `python <args>` with `env` added; it must print one JSON object as its last line."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    """A child's answer to run_child."""
    print(json.dumps(result, default=float), flush=True)


class Timer:
    def __init__(self):
        self.started = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        return seconds


def best(samples: list[float]) -> float:
    """The fastest of repeated runs: on a shared machine, noise only ever adds time."""
    return min(samples)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
