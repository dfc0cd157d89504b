"""A worker or a beat that cannot reach the database stops at once with one clear line: a worker
instead of saying `ready`, taking messages and failing (and, acked late, losing) every one of
them; a beat instead of some sixty lines of traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+psycopg://fairvalue:fairvalue@127.0.0.1:5439/fairvalue"  # nothing listens there


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FAIRVALUE_DATABASE_URL": UNREACHABLE, "FAIRVALUE_BROKER_URL": "",
            "FAIRVALUE_VAR_DIR": str(tmp_path)}  # the embedded broker, in a folder of its own


def test_a_worker_without_its_database_exits_with_one_line(tmp_path):
    env = _env(tmp_path)
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


def test_a_beat_without_its_database_exits_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "--loglevel", "INFO",
                           "-s", str(tmp_path / "schedule")],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    refusal = [line for line in done.stderr.splitlines() if "the database cannot be reached" in line]
    assert len(refusal) == 1 and "5439" in refusal[0] and "beat lock" in refusal[0], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
