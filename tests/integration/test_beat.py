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
    from sqlalchemy import text

    from storage.db import get_engine
    from tasks.beat import BEAT_LOCK_KEY

    first, first_log = beat(tmp_path, "beat-1")
    try:
        # Past setup_schedule: the lock is held (in this session's database; another suite's beat
        # may hold the same key in its own).
        with get_engine().connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            held = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
                        "AND objid = :k AND granted AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database()))")
            deadline = time.time() + 60
            while not conn.execute(held, {"k": BEAT_LOCK_KEY}).scalar() and time.time() < deadline:
                assert first.poll() is None, first_log.read_text()
                time.sleep(0.1)
            assert conn.execute(held, {"k": BEAT_LOCK_KEY}).scalar(), first_log.read_text()
        assert "beat: Starting" in first_log.read_text() and first.poll() is None, first_log.read_text()

        second, second_log = beat(tmp_path, "beat-2")
        second.wait(timeout=60)

        assert "exactly one may run" in second_log.read_text()
        assert first.poll() is None  # the first beat keeps running
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_a_beat_that_lost_its_lock_takes_it_again_or_stops(database, tmp_path):
    """The lock lives on one connection. Dropped (a database restart, a network cut), it is
    released: the beat takes it again at its next check, or stops when another took it first."""
    from sqlalchemy import text

    from storage.db import get_engine
    from tasks.beat import BEAT_LOCK_KEY

    def lock_holders(conn) -> list[int]:
        return [pid for (pid,) in conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = :k AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),  # not another suite's
            {"k": BEAT_LOCK_KEY})]

    log = tmp_path / "beat.log"
    proc = subprocess.Popen(
        dies_with_tests([sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "--loglevel", "INFO",
                         "--max-interval", "1", "-s", str(tmp_path / "beat-schedule")]),
        cwd=ROOT, env={**os.environ, "FAIRVALUE_BEAT_LOCK_CHECK_SECONDS": "1"}, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    try:
        with get_engine().connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            deadline = time.time() + 60
            while not lock_holders(conn) and time.time() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.5)
            first = lock_holders(conn)
            assert len(first) == 1
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first[0]})
            deadline = time.time() + 30
            again = lock_holders(conn)
            while (not again or again == first) and time.time() < deadline:  # one read per look
                time.sleep(0.2)
                again = lock_holders(conn)
            assert len(again) == 1 and again != first and proc.poll() is None, log.read_text()
            assert "taking it again" in log.read_text()

            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": again[0]})
            taken = False
            deadline = time.time() + 5
            while not taken and time.time() < deadline:  # another beat, as it were, takes it first
                taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": BEAT_LOCK_KEY}).scalar()
            assert taken
            proc.wait(timeout=30)
            assert "another beat took the beat lock" in log.read_text()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": BEAT_LOCK_KEY})
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
