"""The noise floor under forward accuracy: when the same punk sells twice within a day (3 days,
a week), how far is the second price from the first? No model knows an item's value better
than its own price a day earlier, so these figures bound what MAPE / median APE can reach on
a period (models/repeat_sales.py). Next to them, the model's figures from bench/accuracy.py.

    python bench/repeat_sales.py

It fits nothing and chooses no setting, so reading it on the reported Q4 window is not tuning.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairvalue import evaluation  # noqa: E402
from fairvalue.settings import get_settings  # noqa: E402
from models.repeat_sales import spread_table  # noqa: E402

PERIODS = {
    "2021 Q2": ("2021-04-01", "2021-07-01"),
    "2021 Q3": ("2021-07-01", "2021-10-01"),
    "2021 Q4": ("2021-10-01", "2022-01-01"),
}


def main() -> None:
    data = evaluation.load_market(get_settings(), "bundled", [], None, None)
    table = spread_table(data.sales, PERIODS)
    print("previous price of the same item as the prediction, clean bundled sales")
    print(f"{'period':8} {'within':>7} {'n':>5} {'MAPE':>7} {'medAPE':>7}")
    for row in table.itertuples():
        print(f"{row.period:8} {row.within_days:5.0f} d {row.n:5d} {row.mape:7.2%} {row.median_ape:7.2%}")


if __name__ == "__main__":
    main()
