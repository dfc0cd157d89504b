"""The market's level, computed robustly and causally (a level at t uses only data before t).

Two series:
- `robust_floor`: the bundled floor column cleaned of one-day placeholders (it jumps from
  36.99 to 1.0 and back on 2020-12-11): a trailing median of the last 3 observed days.
- `sales_index`: the service's own daily level from clean sales: the 25th percentile of the
  prices of the last 3 days' sales (widened to 7 and 14 days when a window holds fewer than
  10 sales). A low quantile tracks the floor of traded items, and one odd sale, a gift or a
  burst of rare sales cannot move it much.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOOR_SMOOTHING_DAYS = 3
INDEX_QUANTILE = 0.25
INDEX_WINDOWS_DAYS = (3, 7, 14)
INDEX_MIN_SALES = 10


def robust_floor(market: pd.DataFrame) -> pd.DataFrame:
    """The market frame with `floor` replaced by its trailing median over 3 observed days."""
    out = market.copy()
    floors = out["floor"].where(out["floor"] > 0)
    out["floor"] = floors.rolling(FLOOR_SMOOTHING_DAYS, min_periods=1).median()
    return out


def sales_index(sales: pd.DataFrame, days: pd.DatetimeIndex) -> pd.Series:
    """Level at the start of each day in `days`, from sales strictly before that day."""
    times = sales["ts"].to_numpy()
    prices = sales["price"].to_numpy(dtype=float)
    starts = days.normalize().to_numpy()
    hi = np.searchsorted(times, starts, side="left")
    level = np.full(len(starts), np.nan)
    for window in INDEX_WINDOWS_DAYS:
        lo = np.searchsorted(times, starts - np.timedelta64(window, "D"), side="left")
        todo = np.isnan(level) & (hi - lo >= INDEX_MIN_SALES)
        for i in np.flatnonzero(todo):
            level[i] = np.quantile(prices[lo[i]:hi[i]], INDEX_QUANTILE)
    return pd.Series(level, index=days, name="sales_index")


def daily_index(sales: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.Series:
    """The sales index for every day from the first sale (or `start`) to `end` (inclusive)."""
    if sales.empty:
        return pd.Series(dtype=float, name="sales_index")
    first = (start or sales["ts"].min()).normalize()
    last = (end or sales["ts"].max()).normalize() + pd.Timedelta(days=1)
    return sales_index(sales, pd.date_range(first, last, freq="D")).ffill()
