"""How far apart two sales of the same item are when they are close in time.

When an item sells again within a day or a week, its previous price is the best evidence
any model could have of its value (the same item, almost the same market). How much the
second price still differs from the first is noise no valuation can remove, so this spread
is a floor under any model's forward error, measured on the same sales and with the same
metrics as the model (models/metrics.valuation_metrics).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.metrics import valuation_metrics


def previous_sales(sales: pd.DataFrame) -> pd.DataFrame:
    """Each sale with the same item's previous sale (its ts and price; NaN/NaT for a first sale)."""
    ordered = sales.sort_values(["item_key", "ts"], kind="stable")
    by_item = ordered.groupby("item_key", sort=False)
    out = ordered[["ts", "item_key", "price"]].copy()
    out["previous_ts"] = by_item["ts"].shift()
    out["previous_price"] = by_item["price"].shift()
    return out.sort_values("ts", kind="stable")


def repeat_sale_spread(sales: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                       within: pd.Timedelta) -> dict[str, float | int]:
    """valuation_metrics of 'the previous price' as the prediction of every sale in [start, end)
    whose item sold before, at most `within` earlier."""
    pairs = previous_sales(sales)
    gap = pairs["ts"] - pairs["previous_ts"]
    picked = pairs[(pairs["ts"] >= start) & (pairs["ts"] < end) & (gap <= within)]
    return valuation_metrics(picked["previous_price"].to_numpy(dtype=float), picked["price"].to_numpy(dtype=float))


def spread_table(sales: pd.DataFrame, periods: dict[str, tuple[str, str]],
                 windows_days: tuple[float, ...] = (1, 3, 7)) -> pd.DataFrame:
    rows = []
    for name, (start, end) in periods.items():
        for days in windows_days:
            m = repeat_sale_spread(sales, pd.Timestamp(start), pd.Timestamp(end), pd.Timedelta(days=days))
            rows.append({"period": name, "within_days": days, "n": m["n"], "mape": m.get("mape", np.nan),
                         "median_ape": m.get("median_ape", np.nan)})
    return pd.DataFrame(rows)
