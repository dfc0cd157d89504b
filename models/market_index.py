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
    level = np.full(len(starts), np.nan)
    for window in INDEX_WINDOWS_DAYS:
        quantile, count = trailing_quantiles(times, prices, starts, pd.Timedelta(days=window), (INDEX_QUANTILE,))
        todo = np.isnan(level) & (count >= INDEX_MIN_SALES)
        level[todo] = quantile[todo, 0]
    return pd.Series(level, index=days, name="sales_index")


def trailing_quantiles(
    times: np.ndarray, values: np.ndarray, query_times: np.ndarray, window: pd.Timedelta,
    quantiles: tuple[float, ...] = (0.5,),
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of `values` over [t - window, t) for each query time t, and the count.
    `times` must be sorted. Returns (array of shape (n_queries, n_quantiles), counts).

    Query points are merged into the series as NaN and pandas' rolling window (closed on the
    left, so nothing at t itself is seen) does the work in C."""
    values = np.where(np.isfinite(values), values, np.nan)
    n_obs = len(times)
    merged_times = np.concatenate([times, query_times])
    merged_values = np.concatenate([values, np.full(len(query_times), np.nan)])
    order = np.argsort(merged_times, kind="stable")
    series = pd.Series(merged_values[order], index=pd.DatetimeIndex(merged_times[order]))
    rolling = series.rolling(window, closed="left", min_periods=1)
    is_query = order >= n_obs
    position = np.empty(len(query_times), dtype=int)
    position[order[is_query] - n_obs] = np.flatnonzero(is_query)
    out = np.column_stack([rolling.quantile(q).to_numpy()[position] for q in quantiles])
    counts = rolling.count().to_numpy()[position]
    return out, np.nan_to_num(counts)


def daily_index(sales: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.Series:
    """The sales index for every day from the first sale (or `start`) to `end` (inclusive)."""
    if sales.empty:
        return pd.Series(dtype=float, name="sales_index")
    first = (start or sales["ts"].min()).normalize()
    last = (end or sales["ts"].max()).normalize() + pd.Timedelta(days=1)
    return sales_index(sales, pd.date_range(first, last, freq="D")).ffill()
