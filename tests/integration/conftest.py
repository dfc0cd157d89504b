"""The real parts (fixtures and worker helpers) live in tests/realparts.py, shared with tests/faults."""

from tests.realparts import ROOT, start_worker, stop_worker, wait_for  # noqa: F401  (imported by the tests here)
