"""Forward accuracy on the bundled data, as issue #3 asks:
train on everything before 2021-10-01, replay 2021-10-01 .. 2021-12-31 at daily cadence
(retraining per the staleness rule), score each sale against the last nowcast published
before it, and print the model's figures next to the previous-day-floor baseline of the
same run.

    python bench/accuracy.py [--from 2021-10-01 --to 2022-01-01 --cadence 1d]

Settings were chosen by walk-forward on 2021-04..2021-09; do not tune on the window this prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairvalue import evaluation  # noqa: E402
from fairvalue.settings import get_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", default="2021-10-01")
    parser.add_argument("--to", dest="end", default="2022-01-01")
    parser.add_argument("--cadence", default="1d", choices=sorted(evaluation.CADENCES))
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args()
    settings = get_settings()
    data = evaluation.load_market(settings, "bundled", [], None, None)
    started = time.perf_counter()
    result = evaluation.evaluate(data, pd.Timestamp(args.start), pd.Timestamp(args.end), args.cadence, settings)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps(result.report, default=str, allow_nan=False))
        return
    print(f"replay {args.start} .. {args.end} at {args.cadence}: {seconds:.0f} s, "
          f"{len(result.report['trainings'])} trainings, {result.report['sales_in_window']} sales in window; "
          f"{evaluation.describe_filtered(result.report['filtered_out'])}")
    # bias: the median signed error (the issue's); meanBias its mean, a few outliers' pull
    print(f"{'':20} {'n':>6} {'MAPE':>7} {'medAPE':>7} {'bias':>7} {'meanBias':>8} {'±10%':>6} {'band':>6} "
          f"{'width':>6} {'score':>6}")
    for name in ("model", "previous_day_floor"):
        m = result.report[name]
        # the band's coverage, median log width and interval score (models.metrics.interval_scores)
        band = (f"{m['band_coverage']:6.1%} {m['band_width']:6.3f} {m['band_score']:6.3f}" if "band_coverage" in m
                else "     -      -      -")
        print(f"{name:20} {m['n']:6d} {m['mape']:7.2%} {m['median_ape']:7.2%} {m['bias']:+7.2%} "
              f"{m['mean_bias']:+8.2%} {m['within_10pct']:6.1%} {band}")
    model, floor = result.report["model"], result.report["previous_day_floor"]
    print(f"ratio model/floor MAPE: {model['mape'] / floor['mape']:.2f}")


if __name__ == "__main__":
    main()
