"""Fast walk-forward harness for choosing model settings on periods BEFORE the reported one.

One training per fold (everything before the fold's start), then every clean sale of the fold
is valued as the daily replay values it: by the nowcast published at the start of the sale's
day (00:00 UTC), i.e. from sales strictly before that midnight and daily market inputs of
earlier days. The feature builder is causal, so one call with the full data and those
as-of times gives exactly those features. Folds never reach 2021-10-01 (the reported Q4).

    python bench/tune.py                        # folds Q2 and Q3 2021 with the defaults
    python bench/tune.py --set recency_half_life_days=90 --set max_iter=300
    python bench/tune.py --folds q3 --json

It differs from the replay only in not retraining weekly inside the fold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairvalue import evaluation  # noqa: E402
from fairvalue.settings import get_settings  # noqa: E402
from models import estimator  # noqa: E402
from models.features import MarketData, floor_before  # noqa: E402
from models.metrics import valuation_metrics  # noqa: E402

# Tuning folds: (train before = score from, score until). Never at or after 2021-10-01.
FOLDS = {
    "q2": ("2021-04-01", "2021-07-01"),
    "q3": ("2021-07-01", "2021-10-01"),
}
REPORTED_WINDOW_START = pd.Timestamp("2021-10-01")


def parse_params(pairs: list[str]) -> estimator.TrainParams:
    types = {f.name: f.type for f in fields(estimator.TrainParams)}
    values = {}
    for pair in pairs:
        name, _, raw = pair.partition("=")
        if name not in types:
            raise SystemExit(f"unknown parameter {name!r}; known: {', '.join(sorted(types))}")
        kind = {"int": int, "float": float, "str": str, "bool": lambda s: s.lower() in ("1", "true", "yes")}
        values[name] = kind.get(str(types[name]), float)(raw)
    return estimator.TrainParams(**values)


def nowcast_times(ts: pd.Series) -> pd.Series:
    """The daily replay's tick that scores a sale: the last midnight strictly before it."""
    return (ts - pd.Timedelta(1, "ns")).dt.normalize()


def score_fold(data: MarketData, start: str, end: str, params: estimator.TrainParams) -> dict:
    start_t, end_t = pd.Timestamp(start), pd.Timestamp(end)
    if end_t > REPORTED_WINDOW_START:
        raise SystemExit("tuning folds must end by 2021-10-01: the reported window is never tuned on")
    began = time.perf_counter()
    model = estimator.fit(data.before(start_t), params)
    fit_seconds = time.perf_counter() - began
    sales = data.sales[(data.sales["ts"] > start_t) & (data.sales["ts"] <= end_t)]
    queries = pd.DataFrame({"item_key": sales["item_key"].to_numpy(), "ts": nowcast_times(sales["ts"]).to_numpy()})
    values = model.predict(data.before(end_t), queries)
    price = sales["price"].to_numpy(dtype=float)
    out = valuation_metrics(values["fair_value"].to_numpy(), price, values["p10"].to_numpy(), values["p90"].to_numpy())
    floor = floor_before(data.market, queries["ts"])
    out["floor_mape"] = valuation_metrics(floor, price)["mape"]
    out["fit_seconds"] = fit_seconds
    out["seconds"] = time.perf_counter() - began
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", default="q2,q3", help=f"comma-separated, of {', '.join(FOLDS)}")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="NAME=VALUE",
                        help="override a TrainParams field")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    params = parse_params(args.params)
    data = evaluation.load_market(get_settings(), "bundled", [], None, None)
    results = {name: score_fold(data, *FOLDS[name], params) for name in args.folds.split(",")}
    if args.json:
        print(json.dumps({"params": params.as_dict(), "folds": results}))
        return
    print(f"{'fold':5} {'n':>5} {'MAPE':>7} {'medAPE':>7} {'bias':>7} {'±10%':>6} {'band':>6} {'floor':>7} "
          f"{'fit s':>6}")
    for name, m in results.items():
        print(f"{name:5} {m['n']:5d} {m['mape']:7.2%} {m['median_ape']:7.2%} {m['bias']:+7.2%} "
              f"{m['within_10pct']:6.1%} {m['band_coverage']:6.1%} {m['floor_mape']:7.2%} {m['fit_seconds']:6.1f}")
    print(f"mean  MAPE {np.mean([m['mape'] for m in results.values()]):.2%}  "
          f"medAPE {np.mean([m['median_ape'] for m in results.values()]):.2%}")


if __name__ == "__main__":
    main()
