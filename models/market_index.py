"""The market's level, computed robustly and causally (a level at t uses only data before t).

Two series:
- `robust_floor`: the bundled floor column cleaned of what its source got wrong: a trailing
  median of the last 3 observed days, and, given the sales, held through the moves the sales do
  not confirm. The column is a few-day mean of daily minimum sales, so one odd sale moves it for
  days: a 4.4 ETH "sale" on 2021-11-01 kept it at ~75 ETH for a week while punks kept selling at
  ~95, and sales of 20, 32 and 36.99 ETH in a 3 ETH market took it to 11.6, 20, 28.5 and 36.99 on
  2020-12-06..10 before it fell back to 1.0-2.5 (see `hold_unconfirmed_moves`).
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

# A floor that falls to under 90 % of the low of the sales around it was pulled down by an odd
# sale: the sales do not confirm the fall.
DROP_TOLERANCE = 0.9
# A floor that rises to over twice that low was pushed up by odd sales: the floor sits near the
# low of what sells. Before this rule, over 2017-2021, the cleaned floor was above twice the low
# on 12 days: the spikes of 2017-07-19/20, 2017-08-03..05, 2017-12-27/28, 2018-08-15..17 and
# 2020-12-06/07. Without sales to tell, a floor that more than doubles in a day is held too
# (2018-09-18..21, 2020-10-29..11-01).
RISE_TOLERANCE = 2.0
SALES_LOW_QUANTILE = 0.2  # the low of a window of sales: its 20th percentile ...
SALES_LOW_DAYS = 3  # ... over the day and the two before it ...
SALES_LOW_MIN_SALES = 5  # ... when they hold at least 5 sales ...
ODD_SALE_FRACTION = 0.6  # ... left after dropping those under 60 % of the day before's floor (the lower of
# the held one and the median).


def robust_floor(market: pd.DataFrame, sales: pd.DataFrame | None = None) -> pd.DataFrame:
    """The market frame with `floor` replaced by its trailing median over 3 observed days and,
    when the sales are given, held through the moves they do not confirm. Days without a floor
    (the source's gaps, up to 10 days before 2021) stay without one: `features.floor_before`
    reads the latest observed day, and a gap counts for neither the median nor the hold.

    Causal: a day's floor uses sales of that day and earlier only, and callers read a day's
    floor only after the day is over (`features.floor_before`)."""
    out = market.copy()
    observed = np.flatnonzero((out["floor"] > 0).to_numpy())
    floors = pd.Series(out["floor"].to_numpy(dtype=float)[observed])
    cleaned = floors.rolling(FLOOR_SMOOTHING_DAYS, min_periods=1).median().to_numpy()
    if sales is not None and len(sales) and len(cleaned):
        cleaned = hold_unconfirmed_moves(out["day"].to_numpy()[observed], cleaned, sales)
    out["floor"] = np.nan
    out.iloc[observed, out.columns.get_loc("floor")] = cleaned
    return out


def hold_unconfirmed_moves(days: np.ndarray, floor: np.ndarray, sales: pd.DataFrame) -> np.ndarray:
    """The floor (one value per observed day), with each move the recent sales do not confirm
    replaced by the previous day's value (as held):

    - a fall to under DROP_TOLERANCE of the low of the recent sales. A real fall shows in the
      sales, so their low falls with it and the floor follows. Any fall counts, not only a large
      one: the trailing median spreads one odd sale's step over two days (the 26 ETH sale of
      2021-12-28 took the column from 64.97 to 56.48, and the median from 61.10 to 56.61 a day
      later), so no single day need fall far;
    - a rise to over RISE_TOLERANCE times that low; or, where too few sales are there to tell,
      to over RISE_TOLERANCE times the day before (the 2020-12 spike went on through three days
      without a sale, and a 50 ETH sale took the column from 3.8 to 19.2 on 2020-10-28).

    Where there are too few sales to tell, a fall and a rise under RISE_TOLERANCE are kept.
    The low is `held_floor_and_lows`', which judges a sale odd against the lower of the held
    floor and the median."""
    return held_floor_and_lows(days, floor, sales)[0]


def held_floor_and_lows(days: np.ndarray, floor: np.ndarray,
                        sales: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The floor held as `hold_unconfirmed_moves` says, and each day's low of the recent sales:
    the SALES_LOW_QUANTILE of the sales of that day and the SALES_LOW_DAYS - 1 before it, leaving
    out each sale under ODD_SALE_FRACTION of the floor of the day before its own, the held one
    or the median, whichever is lower (gifts, wash trades, the odd sale itself); NaN when fewer
    than SALES_LOW_MIN_SALES remain.

    Not against the median alone: when it has spiked (it read 7.4-28.5 ETH on 2020-12-06..11 in
    a market selling at 2.5-3.6), every real sale of those days would be odd against it, the low
    unknown, and the fall after the spike (to 1.9 on 2020-12-12) unchecked. Nor against the held
    floor alone: a floor held too high would leave out the very sales that show it too high (held
    at 0.97 ETH from 2019-12-31, it left out the 0.44-0.5 sales of early January 2020, so the low
    read 0.6-0.87 and the floor stayed at 0.97 for 11 more days). So the days go in order: a
    sale's day before is held before any day whose window holds the sale. `sales` are sorted by time."""
    times = sales["ts"].to_numpy()
    prices = sales["price"].to_numpy(dtype=float)
    # Each sale's day before: the latest observed day before its own (-1 when there is none).
    day_before = np.searchsorted(days, times.astype("datetime64[D]"), "left") - 1
    day_ends = days.astype("datetime64[D]").astype(times.dtype) + np.timedelta64(1, "D")
    first = np.searchsorted(times, day_ends - np.timedelta64(SALES_LOW_DAYS, "D"), "left")
    last = np.searchsorted(times, day_ends, "left")  # each day's sales are first[i]:last[i]
    held = floor.copy()
    lows = np.full(len(held), np.nan)
    finite = np.isfinite(prices)
    # A loop over the days (each reads the floor held before it), so each step is kept short:
    # a day whose window holds too few sales to give a low is not filtered and sorted.
    for i in range(1, len(held)):
        lo, hi = first[i], last[i]
        if hi - lo >= SALES_LOW_MIN_SALES:
            before = day_before[lo:hi]  # all < i: held already
            floor_then = np.where(before >= 0, np.minimum(held[before], floor[before]), np.nan)
            price = prices[lo:hi]
            kept = np.sort(price[finite[lo:hi] & ~(price < ODD_SALE_FRACTION * floor_then)])
            if len(kept) >= SALES_LOW_MIN_SALES:
                lows[i] = sorted_quantile(kept, SALES_LOW_QUANTILE)
        previous = held[i - 1]
        if held[i] < previous:
            unconfirmed = held[i] < DROP_TOLERANCE * lows[i]  # False when the low is unknown (NaN)
        else:
            unconfirmed = held[i] > RISE_TOLERANCE * (lows[i] if np.isfinite(lows[i]) else previous)
        if unconfirmed:
            held[i] = previous
    return held, lows


def sales_index(sales: pd.DataFrame, days: pd.DatetimeIndex) -> pd.Series:
    """Level at the start of each day in `days`, from sales strictly before that day."""
    times = sales["ts"].to_numpy()
    prices = sales["price"].to_numpy(dtype=float)
    starts = days.normalize().to_numpy()
    level = np.full(len(starts), np.nan)
    for window in INDEX_WINDOWS_DAYS:
        # A wider window only for the days the narrower ones left without a level: in an active
        # market that is few days, whose windows are then read directly.
        todo = np.flatnonzero(np.isnan(level))
        quantile, count = trailing_quantiles(times, prices, starts[todo], pd.Timedelta(days=window),
                                             (INDEX_QUANTILE,))
        enough = count >= INDEX_MIN_SALES
        level[todo[enough]] = quantile[enough, 0]
    return pd.Series(level, index=days, name="sales_index")


def trailing_quantiles(
    times: np.ndarray, values: np.ndarray, query_times: np.ndarray, window: pd.Timedelta,
    quantiles: tuple[float, ...] = (0.5,),
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of the finite `values` over [t - window, t) for each query time t, and their
    count (quantiles NaN when there are none). `times` must be sorted. Returns (array of shape
    (n_queries, n_quantiles), counts).

    Each distinct query time is computed once. When the windows of those times hold few sales
    in all (a nowcast asks for one time), they are read directly; otherwise (training asks for
    every sale's time) pandas' rolling window goes once over all sales. Both interpolate as
    pandas does, so the two give the same bits."""
    finite = np.isfinite(values)
    times, values = times[finite], values[finite]
    distinct, at = np.unique(query_times, return_inverse=True)
    lo = np.searchsorted(times, distinct - np.timedelta64(window), "left")
    hi = np.searchsorted(times, distinct, "left")
    if (hi - lo).sum() <= len(times) + len(distinct):
        out, counts = quantiles_of_windows(values, lo, hi, quantiles)
    else:
        out, counts = rolling_quantiles(times, values, distinct, window, quantiles)
    return out[at.ravel()], counts[at.ravel()]


def quantiles_of_windows(values: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                         quantiles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of values[lo[i]:hi[i]] for each i: the windows side by side, sorted within each."""
    counts = hi - lo
    window_of = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts  # where each window starts once they are side by side
    gathered = values[np.arange(counts.sum()) - first[window_of] + lo[window_of]]
    ordered = gathered[np.lexsort((gathered, window_of))]
    out = np.full((len(counts), len(quantiles)), np.nan)
    some = counts > 0
    for j, q in enumerate(quantiles):
        out[some, j] = interpolated_quantile(ordered, first[some], counts[some], q)
    return out, counts.astype(float)


def interpolated_quantile(ordered: np.ndarray, first: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Quantile q of each sorted run ordered[first:first + count], interpolated exactly as pandas'
    rolling quantile does (low + (high - low) * fraction), not as numpy's (which differs in the
    last bit above the midpoint)."""
    position = q * (counts - 1)
    below = position.astype(np.int64)
    low = ordered[first + below]
    high = ordered[first + np.minimum(below + 1, counts - 1)]
    return np.where(position == below, low, low + (high - low) * (position - below))


def sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """interpolated_quantile of one sorted run, in scalars: the same operations on the same
    doubles, so the same bits, without the arrays' cost per call (held_floor_and_lows calls it
    once per day)."""
    count = len(ordered)
    position = q * (count - 1)
    below = int(position)
    low = ordered[below]
    if position == below:
        return low
    return low + (ordered[min(below + 1, count - 1)] - low) * (position - below)


def rolling_quantiles(times: np.ndarray, values: np.ndarray, query_times: np.ndarray, window: pd.Timedelta,
                      quantiles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """trailing_quantiles for many query times: pandas' rolling window (closed on the left, so
    nothing at t itself is seen) goes over the sales in C. Rows of one time share one window, so
    a query at a sale's time (training asks for every sale's) reads that sale's row; only the
    other query times are merged into the series, as NaN."""
    at_sale = np.searchsorted(times, query_times, "left")
    on_sale = at_sale < len(times)
    on_sale[on_sale] = times[at_sale[on_sale]] == query_times[on_sale]
    merged_times = np.concatenate([times, query_times[~on_sale]])
    merged_values = np.concatenate([values, np.full((~on_sale).sum(), np.nan)])
    order = np.argsort(merged_times, kind="stable")
    series = pd.Series(merged_values[order], index=pd.DatetimeIndex(merged_times[order]))
    rolling = series.rolling(window, closed="left", min_periods=1)
    row_of = np.empty(len(order), dtype=np.int64)  # merged position -> row of the sorted series
    row_of[order] = np.arange(len(order))
    row = np.empty(len(query_times), dtype=np.int64)
    row[on_sale] = row_of[at_sale[on_sale]]
    row[~on_sale] = row_of[len(times):]
    out = np.column_stack([rolling.quantile(q).to_numpy()[row] for q in quantiles])
    counts = rolling.count().to_numpy()[row]
    return out, np.nan_to_num(counts)


def daily_index(sales: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.Series:
    """The sales index for every day from the first sale (or `start`) to `end` (inclusive)."""
    if sales.empty:
        return pd.Series(dtype=float, name="sales_index")
    first = (start or sales["ts"].min()).normalize()
    last = (end or sales["ts"].max()).normalize() + pd.Timedelta(days=1)
    return sales_index(sales, pd.date_range(first, last, freq="D")).ffill()
