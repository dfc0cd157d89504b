"""`fairvalue up` stopping its processes: one that ignores TERM (a worker's warm shutdown waiting
for a long training) is killed after the timeout instead of crashing `up` with TimeoutExpired."""

from __future__ import annotations

import subprocess
import sys
import time

from fairvalue.cli.running import stop_processes

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(60)"


def test_a_process_that_ignores_term_is_killed_after_the_timeout():
    stubborn = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert stubborn.stdout.readline().strip() == "ready"  # its TERM handler is in place
        started = time.monotonic()
        killed = stop_processes({"api": polite, "worker": stubborn}, timeout=1.0)
        assert killed == ["worker"]
        assert time.monotonic() - started < 10
        assert stubborn.poll() is not None and polite.poll() is not None
    finally:
        for p in (stubborn, polite):
            if p.poll() is None:
                p.kill()


def test_processes_that_stop_are_not_killed():
    procs = {"beat": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])}
    assert stop_processes(procs, timeout=10) == []
    assert procs["beat"].returncode is not None
