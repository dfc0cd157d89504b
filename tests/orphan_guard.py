"""Run a command that the kernel kills when the test process that started it dies.

    python tests/orphan_guard.py [--signal=TERM] PARENT_PID PROGRAM [ARGS...]

SIGKILL by default; `--signal=TERM` for a command that must stop its own children when it goes
(`fairvalue up` terminates its API, worker and beat on SIGTERM; killed, it would orphan them).

A worker (or beat) left behind by an interrupted test run goes on taking later runs' messages
and makes their tests fail for no reason of their own. PR_SET_PDEATHSIG survives the exec, so
the command itself carries it. Set here, in a fresh single-threaded process, rather than in a
`preexec_fn`, which is unsafe in the threaded pytest process."""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

if __name__ == "__main__":
    argv = sys.argv[1:]
    on_death = signal.SIGKILL
    if argv[0].startswith("--signal="):
        on_death = signal.Signals[f"SIG{argv.pop(0).partition('=')[2]}"]
    parent, program, args = int(argv[0]), argv[1], argv[1:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, on_death) != 0:
        sys.exit(f"orphan_guard: prctl failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        sys.exit("orphan_guard: the test process died before the guard was set")
    os.execv(program, args)
