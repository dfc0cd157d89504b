"""What knowing each day's market would give a replay's forward values (models.metrics.day_oracle):
MAPE and median APE as exported, with each day's median log error removed (generous: the day's
median holds part of each sale's own error), and with the median of the day's other sales removed.

    fairvalue replay --from 2021-10-01 --to 2022-01-01 --source bundled --export q4.csv
    python bench/day_oracle.py q4.csv

It fits nothing and chooses no setting (docs/model.md, thirteenth round).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.metrics import day_oracle  # noqa: E402

LABELS = {"as_is": "as exported", "day_median_removed": "day's median removed",
          "others_median_removed": "other sales' median removed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="a `fairvalue replay --export` file")
    args = parser.parse_args()
    rows = pd.read_csv(args.export, usecols=["timestamp", "price", "fair_value"])
    days = pd.to_datetime(rows["timestamp"], utc=True).dt.tz_localize(None).dt.normalize().to_numpy()
    readings = day_oracle(rows["fair_value"].to_numpy(), rows["price"].to_numpy(), days)
    print(f"{'':30} {'n':>5} {'MAPE':>7} {'medAPE':>7}")
    for key, label in LABELS.items():
        r = readings[key]
        print(f"{label:30} {r['n']:5d} {r['mape']:7.2%} {r['median_ape']:7.2%}")


if __name__ == "__main__":
    main()
