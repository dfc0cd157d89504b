"""Exactly one beat: a second one exits instead of emitting every periodic task again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.realparts import dies_with_tests

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def beat(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        dies_with_tests([sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "--loglevel", "INFO",
                         "-s", str(tmp_path / f"{name}-schedule")]),
        cwd=ROOT, env=os.environ.copy(), stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    return proc, log


def test_a_second_beat_refuses_to_run(database, tmp_path):
    first, first_log = beat(tmp_path, "beat-1")
    try:
        deadline = time.time() + 60
        while "beat: Starting" not in first_log.read_text() and time.time() < deadline:
            assert first.poll() is None, first_log.read_text()
            time.sleep(0.5)
        time.sleep(2)  # past setup_schedule: the lock is held
        assert first.poll() is None, first_log.read_text()

        second, second_log = beat(tmp_path, "beat-2")
        second.wait(timeout=60)

        assert "exactly one may run" in second_log.read_text()
        assert first.poll() is None  # the first beat keeps running
    finally:
        first.terminate()
        first.wait(timeout=30)
