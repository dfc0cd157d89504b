"""Each bench script runs end to end at a tiny size, so they do not rot. No figure is
asserted here (speed is judged by the scripts' own output, not by timed tests); what must
hold is that each script completes and prints its figures and its ratio to its baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: float = 240) -> str:
    # As from the README in a fresh shell: none of the test run's FAIRVALUE_* settings (its
    # webhook secret and rate limit once hid that bench/api.py's server refused to start).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRVALUE_") or k.startswith("FAIRVALUE_BENCH_")}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_nowcast_bench_runs_bundled_and_synthetic():
    out = run_bench("bench/nowcast.py", "--sizes", "10000,20000", "--repeat", "1", "--archive", "dir",
                    "--train-max-iter", "10")
    assert "x bare predict" in out and "seconds per item relative to 10,000 items" in out
    assert "20,000 synthetic items" in out


def test_api_bench_compares_with_the_bare_endpoint():
    out = run_bench("bench/api.py", "--seconds", "1", "--rounds", "1", "--connections", "8", "--generator", "python")
    for kind in ("bare", "item", "bulk", "bare-bulk"):
        assert f"\n{kind} " in out
    assert "x bare" in out and "WARNING" not in out  # every answer was a 2xx
    assert "x a bare endpoint sending a body of its size" in out


def test_ingest_bench_reports_file_and_webhook_rates():
    out = run_bench("bench/ingest.py", "--sales", "2000", "--calls", "60", "--seconds", "10")
    assert "sales/s" in out and "x COPY" in out and "calls/s" in out
    assert "stored 60 sales" in out  # every signed call was stored


def test_training_bench_reports_retrain_against_a_bare_fit():
    out = run_bench("bench/training.py", "--max-iter", "5", "--skip-replay")
    assert "retrain on" in out and "bare HistGradientBoostingRegressor" in out


def test_retention_bench_thins_and_compares_with_a_bare_delete():
    out = run_bench("bench/retention.py", "--days", "2", "--items", "200", "--sales-per-day", "20")
    assert "rows_after" in out and "x a bare delete of every row" in out
