"""Run a command that the kernel kills when the test process that started it dies.

    python tests/orphan_guard.py PARENT_PID PROGRAM [ARGS...]

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
    parent, program, args = int(sys.argv[1]), sys.argv[2], sys.argv[2:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        sys.exit(f"orphan_guard: prctl failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        sys.exit("orphan_guard: the test process died before the guard was set")
    os.execv(program, args)
