"""A worker that cannot reach the database stops at once with one clear line, instead of saying
`ready`, taking messages and failing (and, acked late, losing) every one of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+psycopg://fairvalue:fairvalue@127.0.0.1:5439/fairvalue"  # nothing listens there


def test_a_worker_without_its_database_exits_with_one_line(tmp_path):
    env = {**os.environ, "FAIRVALUE_DATABASE_URL": UNREACHABLE, "FAIRVALUE_BROKER_URL": "",
           "FAIRVALUE_VAR_DIR": str(tmp_path)}  # the embedded broker, in a folder of its own
    try:
        done = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "default",
                               "-c", "1", "--pool", "solo", "-n", "startup-probe@%h", "--loglevel", "INFO"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the worker started without its database:\n{exc.output}\n{exc.stderr}") from None
    assert done.returncode == 1, done.stderr
    refusal = [line for line in done.stderr.splitlines() if "the database cannot be reached" in line]
    assert len(refusal) == 1 and "5439" in refusal[0] and "not starting" in refusal[0], done.stderr
    assert "Traceback" not in done.stderr and "ready" not in done.stderr + done.stdout
