"""Each bench script runs end to end at a tiny size, so they do not rot. No figure's value is
asserted here (speed is judged by the scripts' own output, not by timed tests); what must
hold is that each script completes and prints its figures and its ratio to its baseline."""

from __future__ import annotations

import os
import re
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


def figure(out: str, pattern: str) -> str:
    """The first group of `pattern` in the bench's output (a printed figure), or a failure showing the output."""
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"{pattern!r} not in the output:\n{out}"
    return found.group(1)


# Each script at its smallest size that still runs every step it reports on: the cost left is
# what every run pays (a scratch database migrated, the bundled market seeded, the processes'
# imports, the features of a fit), not the size of the work.


def test_nowcast_bench_runs_bundled_and_synthetic():
    # The bundled 10,000 (which alone gets the bare-predict baseline) and one small synthetic collection.
    out = run_bench("bench/nowcast.py", "--sizes", "10000,1000", "--repeat", "1", "--archive", "dir",
                    "--train-max-iter", "2")
    assert "1,000 synthetic items" in out
    for size in ("10,000", "1,000"):
        assert float(figure(out, rf"^\s+{size}\s+(\d+\.\d+)\s")) > 0  # its total seconds
    assert float(figure(out, r"^10k nowcast \d+\.\d+ s = (\d+\.\d+)x bare predict")) > 0
    assert float(figure(out, r"^seconds per item relative to 1,000 items: 10,000: (\d+\.\d+)")) > 0


def test_api_bench_compares_with_the_bare_endpoint():
    out = run_bench("bench/api.py", "--seconds", "0.5", "--rounds", "1", "--connections", "2", "--generator", "python",
                    "--train-max-iter", "2")
    for kind in ("bare", "item", "bulk", "bare-bulk"):
        assert float(figure(out, rf"^{kind} +\d+ +(\d+) ")) > 0, kind  # requests/s
    assert "WARNING" not in out  # every answer was a 2xx
    assert float(figure(out, r"^item: (\d+\.\d+)x bare")) > 0
    assert float(figure(out, r"^bulk: (\d+\.\d+)x a bare endpoint sending a body of its size")) > 0


def test_ingest_bench_reports_file_and_webhook_rates():
    # --seconds only bounds each webhook run, which ends once every call is sent: lower, a slow
    # host would store fewer than --calls and fail the count below, and no run would be shorter.
    out = run_bench("bench/ingest.py", "--sales", "200", "--calls", "20", "--seconds", "30")
    assert float(figure(out, r"^file: 200 sales in \d+\.\d+ s = ([\d,]+) sales/s").replace(",", "")) > 0
    assert float(figure(out, r"ingest = (\d+\.\d+)x COPY")) > 0
    assert float(figure(out, r"^webhook: 20 signed calls, ([\d,]+) calls/s").replace(",", "")) > 0
    assert "stored 20 sales" in out  # every signed call was stored
    assert float(figure(out, r"webhook = (\d+\.\d+)x bare")) > 0


def test_training_bench_reports_retrain_against_a_bare_fit():
    out = run_bench("bench/training.py", "--max-iter", "2", "--skip-replay")
    assert float(figure(out, r"^retrain on [\d,]+ bundled sales \([\d,]+ x \d+ matrix\): (\d+\.\d+) s")) > 0
    assert float(figure(out, r"bare HistGradientBoostingRegressor on the same matrix \d+\.\d+ s; "
                             r"retrain = (\d+\.\d+)x")) > 0


def test_retention_bench_thins_and_compares_with_a_bare_delete():
    out = run_bench("bench/retention.py", "--days", "1", "--items", "20", "--sales-per-day", "5")
    before, after = int(figure(out, r"rows_before: (\d+)$")), int(figure(out, r"rows_after: (\d+)$"))
    assert before == 48 * 20 and 0 < after < before  # a day of half-hourly snapshots, thinned
    assert float(figure(out, r"retention took (\d+\.\d+)x a bare delete of every row")) > 0
