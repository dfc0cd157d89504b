"""The suite's own guards against a second test session on this host (tests/conftest.py) and
against workers outliving the run that started them (tests/orphan_guard.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests import conftest
from tests.realparts import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """Running, not merely unreaped (a container's init may never reap an orphan)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_guarded_child_is_killed_when_the_process_that_started_it_dies():
    # A stand-in for the pytest process: starts a guarded child, says its pid, then waits.
    starter = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, {str(ROOT / 'tests' / 'orphan_guard.py')!r}, str(os.getpid()),"
        " '/bin/sleep', '300'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        cmdline = Path(f"/proc/{child}/cmdline")
        wait_for(lambda: cmdline.read_bytes().startswith(b"/bin/sleep"), timeout=30, interval=0.1)
        assert _alive(child)
        proc.send_signal(signal.SIGKILL)  # as an interrupted run dies: no teardown
        proc.wait()
        wait_for(lambda: not _alive(child), timeout=30, interval=0.1)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_guard_can_send_term_so_the_child_stops_its_own_children(tmp_path):
    """`fairvalue up` stops its API, worker and beat on SIGTERM; a SIGKILL would orphan them."""
    stopped, ready = tmp_path / "stopped", tmp_path / "ready"
    child_code = (f"import pathlib, signal, sys, time\n"
                  f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(stopped)!r}).write_text('term'),"
                  f" sys.exit(0)))\n"
                  f"pathlib.Path({str(ready)!r}).write_text('ready')\ntime.sleep(300)\n")
    starter = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, {str(ROOT / 'tests' / 'orphan_guard.py')!r}, '--signal=TERM',"
        f" str(os.getpid()), sys.executable, '-c', {child_code!r}])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        wait_for(ready.exists, timeout=30, interval=0.1)  # its handler is set
        proc.send_signal(signal.SIGKILL)  # as an interrupted run dies: no teardown
        proc.wait()
        wait_for(lambda: stopped.exists(), timeout=30, interval=0.1)
        assert stopped.read_text() == "term"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_the_guard_refuses_when_its_parent_is_already_gone():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "orphan_guard.py"), "1", "/bin/true"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "died before the guard was set" in result.stderr


def test_this_sessions_redis_database_is_claimed_and_a_second_session_is_refused(broker, monkeypatch):
    assert broker.get(conftest.REDIS_CLAIM_KEY) == conftest.SESSION_ID.encode()
    assert 0 < broker.ttl(conftest.REDIS_CLAIM_KEY) <= conftest.REDIS_CLAIM_SECONDS  # a killed session lets go
    monkeypatch.setenv("FAIRVALUE_TEST_REDIS_URL", conftest.REDIS_URL)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # as the first test process names it
    with pytest.raises(RuntimeError, match="held by another test session"):
        conftest._claim_redis_db()


def test_a_named_redis_database_counts_down_per_test_process(monkeypatch):
    """FAIRVALUE_TEST_REDIS_URL names the first test process's database; pytest-xdist's gw1 takes
    the one below it, and a name that leaves none is refused with why."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert conftest._for_this_process("redis://127.0.0.1:6379/12") == "redis://127.0.0.1:6379/12"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert conftest._for_this_process("redis://127.0.0.1:6379/12") == "redis://127.0.0.1:6379/11"
    with pytest.raises(RuntimeError, match="leaves no database for test process gw1"):
        conftest._for_this_process("redis://127.0.0.1:6379/0")


def test_a_second_session_takes_the_next_free_database():
    other = subprocess.run(
        [sys.executable, "-c", "import os; os.environ.pop('FAIRVALUE_TEST_REDIS_URL', None); "
         "from tests import conftest; print(conftest.REDIS_URL)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert other.returncode == 0, other.stderr
    other_url = other.stdout.strip()
    assert other_url != conftest.REDIS_URL
    # Its claim outlives it for at most one lease; let it go so later runs keep their database.
    redis.Redis.from_url(other_url).delete(conftest.REDIS_CLAIM_KEY)


def test_what_a_test_leaves_queued_is_taken_back_and_what_was_there_before_is_left(seeded, broker):
    """realparts.nothing_left_queued (the leaves_nothing_queued fixture): a retrain made inside it
    leaves neither its message nor a queued request (a later file's training worker trained them),
    while a request and a message from before it are left as they were."""
    from fairvalue.settings import get_settings
    from storage.db import session_scope
    from storage.tables import TrainingRequest
    from tasks import queues
    from tasks.lifecycle import request_training
    from tests.realparts import nothing_left_queued, set_aside, take_back, training_messages

    def state(request_id: int) -> str:
        with session_scope() as session:
            return session.get(TrainingRequest, request_id).state

    earlier = request_training("queued before", None, get_settings()).request_id
    try:
        with nothing_left_queued():
            inside = request_training("queued inside", None, get_settings()).request_id
            assert len(training_messages(inside)) == 1
        assert training_messages(inside) == [] and state(inside) == "failed"
        assert len(training_messages(earlier)) == 1 and state(earlier) == "queued"
    finally:
        take_back(queues.TRAINING, training_messages(earlier))
        set_aside(earlier)
