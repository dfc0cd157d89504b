"""Strategy backtest on forward predictions: does buying what the model calls cheap beat buying everything?

Pure: the caller supplies the scored sales, every clean sale and a daily market index; the
functions return numbers and curves. The rules are written out in `backtest()` and in
docs/backtest.md; the two must stay the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from models.market_index import INDEX_MIN_SALES, trailing_quantiles
from models.signals import BUY, signals
from models.times import naive_utc

PERIODS_PER_YEAR = 365  # these markets trade every calendar day, weekends included
DAY = pd.Timedelta(days=1)

# Reasons a scored sale cannot be traded; each filtered row gets the first one that applies.
FILTER_MISSING_KEY = "missing_timestamp_or_item"
FILTER_PRICE = "price_not_finite_positive"
FILTER_FAIR_VALUE = "fair_value_not_finite_positive"
FILTER_NO_INDEX = "no_index_level_on_entry_day"

EXIT_RESALE = "resale"
EXIT_HORIZON = "horizon"
EXIT_END = "end_of_data"

# The naive baseline's reference (docs/backtest.md): the median sale price of the week before a
# sale, from at least as many sales as the index asks for.
MARKET_MEDIAN_DAYS = 7


# ---------------------------------------------------------------------------------------------
# Shared helpers (also used by models/signal_kpis.py)
# ---------------------------------------------------------------------------------------------


def daily_levels(index: pd.Series) -> pd.Series:
    """A market index as one finite positive level per calendar day from its first to its last day.

    Days are midnights (naive UTC). Non-finite or non-positive levels are dropped; when a day
    appears twice the last one wins; a missing day carries the previous level forward (the
    market did not move as far as we know, which is what a quote-based index does too).
    """
    if index is None or len(index) == 0:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], dtype="datetime64[ns]"))
    levels = pd.Series(np.asarray(index, dtype=float), index=naive_utc(index.index).normalize())
    levels = levels[np.isfinite(levels.to_numpy()) & (levels.to_numpy() > 0)]
    levels = levels[~levels.index.duplicated(keep="last")].sort_index()
    if levels.empty:
        return levels
    calendar = pd.date_range(levels.index[0], levels.index[-1], freq="D")
    return levels.reindex(calendar).ffill()


def level_on(levels: pd.Series, days: Any) -> np.ndarray:
    """The level of `levels` (from daily_levels) on each day; NaN for days outside its range."""
    days = naive_utc(days).normalize()
    return levels.reindex(days).to_numpy(dtype=float)


def next_sale(times: Any, items: Any, sales: pd.DataFrame, horizon_days: float,
              at_or_after: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each (time t, item) the item's first sale with t < ts <= t + horizon_days.

    `sales` is any frame of observations with columns ts, item_key, price (for a market with
    daily prices per item, the daily prices). Strictly after t: a sale at the same instant,
    the scored sale itself included, is never its own exit, so nothing at or before t is used.
    With `at_or_after`, t <= ts: an ask's fill may carry the ask's own instant (models/ask_kpis.py).
    When several sales share the first later timestamp, the one listed first in `sales` wins.
    Returns (next_ts as datetime64[ns] with NaT, next_price with NaN) aligned with the input.
    """
    times = naive_utc(times)
    left = pd.DataFrame({"ts": times.to_numpy(), "item_key": pd.Series(items).astype(str).to_numpy()})
    left["_order"] = np.arange(len(left))
    out_ts = np.full(len(left), np.datetime64("NaT"), dtype="datetime64[ns]")
    out_price = np.full(len(left), np.nan)
    usable = left["ts"].notna().to_numpy()
    if not usable.any() or sales is None or len(sales) == 0:
        return out_ts, out_price
    right = pd.DataFrame(
        {
            "ts": naive_utc(sales["ts"]).to_numpy(),
            "item_key": sales["item_key"].astype(str).to_numpy(),
            "next_price": pd.to_numeric(sales["price"], errors="coerce").to_numpy(dtype=float),
        }
    )
    right = right[right["ts"].notna()]
    right["next_ts"] = right["ts"]
    # A stable sort keeps the listed order among equal timestamps (merge_asof then takes the first).
    right = right.sort_values("ts", kind="stable")
    query = left[usable].sort_values("ts", kind="stable")
    joined = pd.merge_asof(
        query,
        right,
        on="ts",
        by="item_key",
        direction="forward",
        allow_exact_matches=at_or_after,  # else strictly after: no look-ahead through same-instant sales
        tolerance=pd.Timedelta(days=horizon_days),  # inclusive: a resale exactly at t + horizon counts
    )
    order = joined["_order"].to_numpy()
    out_ts[order] = joined["next_ts"].to_numpy(dtype="datetime64[ns]")
    out_price[order] = joined["next_price"].to_numpy(dtype=float)
    return out_ts, out_price


def eligible_rows(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with a timestamp, an item, and a finite positive price and fair value.

    Returns the boolean mask and the count of filtered rows per reason (first failing reason).
    """
    n = len(frame)
    price = pd.to_numeric(frame["price"], errors="coerce").to_numpy(dtype=float)
    fair = pd.to_numeric(frame["fair_value"], errors="coerce").to_numpy(dtype=float)
    checks = [
        (FILTER_MISSING_KEY, frame["timestamp"].notna().to_numpy() & frame["item_id"].notna().to_numpy()),
        (FILTER_PRICE, np.isfinite(price) & (price > 0)),
        (FILTER_FAIR_VALUE, np.isfinite(fair) & (fair > 0)),
    ]
    ok = np.ones(n, dtype=bool)
    reasons: dict[str, int] = {}
    for reason, passes in checks:
        failed = ok & ~passes
        if failed.any():
            reasons[reason] = int(failed.sum())
        ok &= passes
    return ok, reasons


# ---------------------------------------------------------------------------------------------
# Performance measures of a daily return series (hand-checkable)
# ---------------------------------------------------------------------------------------------


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """Value at the end of each period of 1.0 invested before the first one: cumprod(1 + r)."""
    return np.cumprod(1.0 + np.asarray(returns, dtype=float))


def total_return(returns: np.ndarray) -> float:
    """prod(1 + r) - 1; 0.0 for no periods."""
    r = np.asarray(returns, dtype=float)
    return float(np.prod(1.0 + r) - 1.0) if len(r) else 0.0


def annualised_return(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Compound growth rate per year: (1 + total_return) ** (periods_per_year / n) - 1; NaN for n = 0."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return math.nan
    growth = 1.0 + total_return(r)
    if growth <= 0:
        return -1.0  # everything lost; the power of a non-positive number is not a growth rate
    # In logs: a Python float's power raises OverflowError past 1.8e308, which a gain of 8x over a
    # one-day calendar reaches (8 ** 365), and that crashed the whole backtest; inf reads as null.
    exponent = math.log(growth) * periods_per_year / len(r)
    return math.inf if exponent > math.log(np.finfo(float).max) else math.expm1(exponent)


def annualised_volatility(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Sample standard deviation (ddof=1) of the period returns times sqrt(periods_per_year); NaN for n < 2."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def sharpe(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio with a zero risk-free rate: mean(r) / std(r, ddof=1) * sqrt(periods_per_year).

    NaN when it is undefined: fewer than 2 periods or no variation at all.
    """
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd == 0 or not math.isfinite(sd):
        return math.nan
    return float(np.mean(r) / sd * math.sqrt(periods_per_year))


def downside_deviation(returns: np.ndarray) -> float:
    """sqrt(mean(min(r, 0) ** 2)) over ALL periods (target 0): up days count as zero shortfall."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return math.nan
    return float(math.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))


def sortino(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio, target 0: mean(r) / downside_deviation(r) * sqrt(periods_per_year).

    NaN when there is no down period (the ratio would be infinite) or no period at all.
    """
    r = np.asarray(returns, dtype=float)
    dd = downside_deviation(r)
    if not math.isfinite(dd) or dd == 0:
        return math.nan
    return float(np.mean(r) / dd * math.sqrt(periods_per_year))


def max_drawdown(equity: np.ndarray, start: float = 1.0) -> float:
    """Largest fall from a running peak, as a positive fraction: max(1 - E_t / max(start, E_0..E_t)).

    The starting capital `start` counts as the first peak, so a loss on day one is a drawdown.
    0.0 for a curve that never falls (or is empty).
    """
    e = np.asarray(equity, dtype=float)
    if len(e) == 0:
        return 0.0
    peaks = np.maximum.accumulate(np.concatenate([[start], e]))[1:]
    return float(max(0.0, np.max(1.0 - e / peaks)))


def calmar(annual_return: float, drawdown: float) -> float:
    """Annualised return / max drawdown; NaN when there was no drawdown (the ratio is unbounded)."""
    if not math.isfinite(annual_return) or not math.isfinite(drawdown) or drawdown <= 0:
        return math.nan
    return float(annual_return / drawdown)


# ---------------------------------------------------------------------------------------------
# The backtest
# ---------------------------------------------------------------------------------------------


def json_number(value: float) -> float | None:
    """NaN / inf are not JSON; an undefined measure becomes null."""
    return float(value) if value is not None and math.isfinite(value) else None


def strategy_dict(result: Any) -> dict[str, Any]:
    """A strategy's result dataclass (StrategyResult, models.daily_backtest.DailyStrategyResult) for
    JSON: its name, counts as ints, measures as numbers or null (undefined ones), the equity curve
    as points; the daily returns stay out (the curve holds them)."""
    out: dict[str, Any] = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if f.name == "equity":
            out["equity"] = curve_points(value)
        elif f.type == "int":
            out[f.name] = int(value)
        elif f.type == "float":
            out[f.name] = json_number(value)
        elif f.type == "str":
            out[f.name] = value
    return out


def curve_points(series: pd.Series) -> list[list[Any]]:
    """A daily curve as [[ISO day, value or null], ...] for JSON."""
    return [[day.date().isoformat(), json_number(v)] for day, v in series.items()]


@dataclass
class StrategyResult:
    """One strategy's trades and performance over the backtest calendar."""

    name: str
    n_trades: int
    n_closed_by_resale: int
    n_closed_at_horizon_or_end: int
    n_resale_wins: int  # closed by resale with exit price > entry price
    hit_rate: float  # n_resale_wins / n_closed_by_resale (NaN if none closed by resale)
    n_resale_beat_market: int  # closed by resale with exit / entry price > index[exit day] / index[entry day]
    hit_rate_vs_market: float  # n_resale_beat_market / n_closed_by_resale: against the marking index
    n_resale_with_median: int  # closed by resale with a market median at both the entry and the resale
    n_resale_beat_median: int  # of those, exit / entry price > market_median(exit) / market_median(entry)
    hit_rate_vs_median: float  # n_resale_beat_median / n_resale_with_median: against a typical sale's move
    total_return: float
    annualised_return: float
    annualised_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float
    n_days: int
    n_days_with_positions: int
    daily_returns: pd.Series = field(repr=False)  # portfolio return per calendar day
    equity: pd.Series = field(repr=False)  # end-of-day value of 1.0 invested before the first day

    def as_dict(self) -> dict[str, Any]:
        return strategy_dict(self)


@dataclass
class BacktestResult:
    """Both strategies on the same calendar, plus what was filtered and why."""

    threshold: float
    horizon_days: float
    n_rows: int
    n_eligible: int
    n_filtered: int
    filtered: dict[str, int]  # reason -> rows
    start: pd.Timestamp | None  # first calendar day (first eligible entry day)
    end: pd.Timestamp | None  # last calendar day (last exit day)
    buy_all: StrategyResult
    strategy: StrategyResult
    below_market: StrategyResult  # the model-free baseline: cheap against the week's median sale
    trades: pd.DataFrame = field(repr=False)  # one row per eligible scored sale, see backtest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "horizon_days": float(self.horizon_days),
            "n_rows": int(self.n_rows),
            "n_eligible": int(self.n_eligible),
            "n_filtered": int(self.n_filtered),
            "filtered": {k: int(v) for k, v in self.filtered.items()},
            "start": self.start.date().isoformat() if self.start is not None else None,
            "end": self.end.date().isoformat() if self.end is not None else None,
            "buy_all": self.buy_all.as_dict(),
            "strategy": self.strategy.as_dict(),
            "below_market": self.below_market.as_dict(),
        }


def _position_returns(
    calendar: pd.DatetimeIndex, levels: np.ndarray, trades: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weighted daily return of the open positions on each calendar day, and how many were open.

    Done with difference arrays rather than a positions x days matrix (tens of thousands of
    trades over years of days would not fit in memory). Between entry and exit day a position
    moves exactly like the index, so all such positions share the market's daily return; only
    the exit day differs per position.
    """
    n_days = len(calendar)
    returns = np.zeros(n_days)
    if trades.empty or n_days == 0:
        return returns, np.zeros(n_days, dtype=int)
    day0 = calendar[0]
    e = ((trades["entry_day"] - day0) // DAY).to_numpy(dtype=int)
    x = ((trades["exit_day"] - day0) // DAY).to_numpy(dtype=int)
    entry = trades["entry_price"].to_numpy(dtype=float)
    exit_value = trades["exit_price"].to_numpy(dtype=float)

    market = np.zeros(n_days)
    market[1:] = levels[1:] / levels[:-1] - 1.0

    # Positions strictly between entry and exit day (e < d < x) earn the market's return on d.
    middle = np.zeros(n_days + 1, dtype=int)
    spans = x > e + 1
    np.add.at(middle, e[spans] + 1, 1)
    np.add.at(middle, x[spans], -1)
    middle = np.cumsum(middle)[:n_days]

    # On its exit day a position earns exit value / previous day's mark - 1; a same-day exit
    # earns exit value / entry price - 1 on its entry day.
    prev_mark = np.where(x > e, entry * levels[np.maximum(x - 1, 0)] / levels[e], entry)
    exit_return = exit_value / prev_mark - 1.0
    exit_sum = np.zeros(n_days)
    np.add.at(exit_sum, x, exit_return)
    exit_count = np.bincount(x, minlength=n_days)

    open_count = middle + exit_count
    total = middle * market + exit_sum
    has = open_count > 0
    returns[has] = total[has] / open_count[has]
    return returns, open_count


def _strategy_result(
    name: str, calendar: pd.DatetimeIndex, levels: np.ndarray, trades: pd.DataFrame
) -> StrategyResult:
    returns, open_count = _position_returns(calendar, levels, trades)
    equity = equity_curve(returns)
    by_resale = trades["exit_kind"] == EXIT_RESALE
    wins = int((by_resale & (trades["exit_price"] > trades["entry_price"])).sum())
    beat = by_resale & (
        trades["exit_price"] / trades["entry_price"] > trades["exit_level"] / trades["entry_level"]
    )
    n_resale = int(by_resale.sum())
    # Against the typical sale's move: the trailing 7-day median at the resale over the one at the
    # entry, each from sales strictly before its instant (NaN, not counted, where either is missing).
    median_move = trades["exit_market_median"] / trades["market_median"]
    with_median = by_resale & np.isfinite(median_move.to_numpy(dtype=float))
    beat_median = with_median & (trades["exit_price"] / trades["entry_price"] > median_move)
    n_median = int(with_median.sum())
    ann = annualised_return(returns)
    mdd = max_drawdown(equity)
    return StrategyResult(
        name=name,
        n_trades=len(trades),
        n_closed_by_resale=n_resale,
        n_closed_at_horizon_or_end=int(len(trades) - n_resale),
        n_resale_wins=wins,
        hit_rate=wins / n_resale if n_resale else math.nan,
        n_resale_beat_market=int(beat.sum()),
        hit_rate_vs_market=int(beat.sum()) / n_resale if n_resale else math.nan,
        n_resale_with_median=n_median,
        n_resale_beat_median=int(beat_median.sum()),
        hit_rate_vs_median=int(beat_median.sum()) / n_median if n_median else math.nan,
        total_return=total_return(returns),
        annualised_return=ann,
        annualised_volatility=annualised_volatility(returns),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        max_drawdown=mdd,
        calmar=calmar(ann, mdd),
        n_days=len(calendar),
        n_days_with_positions=int((open_count > 0).sum()),
        daily_returns=pd.Series(returns, index=calendar, name=f"{name}_return"),
        equity=pd.Series(equity, index=calendar, name=f"{name}_equity"),
    )


TRADE_COLUMNS = [
    "event_id", "item_id", "entry_ts", "entry_day", "entry_price", "entry_level", "fair_value", "undervalued",
    "exit_kind", "exit_ts", "exit_day", "exit_price", "exit_level", "trade_return", "market_median", "below_market",
    "exit_market_median",
]


def market_median(times: Any, sales: pd.DataFrame, days: float = MARKET_MEDIAN_DAYS) -> np.ndarray:
    """For each time t, the median price of `sales` in [t - days, t): strictly before t, so
    neither the sale at t nor anything at its instant or later is seen. NaN when the window
    holds fewer than INDEX_MIN_SALES finite prices (a median of a handful is no market price)."""
    times = naive_utc(times).to_numpy()
    out = np.full(len(times), np.nan)
    if sales is None or len(sales) == 0 or len(times) == 0:
        return out
    sale_ts = naive_utc(sales["ts"]).to_numpy()
    prices = pd.to_numeric(sales["price"], errors="coerce").to_numpy(dtype=float)
    known = ~np.isnat(sale_ts)
    order = np.argsort(sale_ts[known], kind="stable")
    usable = ~np.isnat(times)
    median, count = trailing_quantiles(sale_ts[known][order], prices[known][order], times[usable],
                                       pd.Timedelta(days=days), (0.5,))
    out[usable] = np.where(count >= INDEX_MIN_SALES, median[:, 0], np.nan)
    return out


def backtest(
    predictions: pd.DataFrame,
    sales: pd.DataFrame,
    index: pd.Series,
    threshold: float = 0.10,
    horizon_days: float = 90,
) -> BacktestResult:
    """Backtest "buy what the model marks undervalued" against "buy every scored sale" and
    against the model-free "buy what is cheap against the week's median sale".

    Inputs
        predictions: one row per scored sale: event_id, timestamp (naive UTC), item_id (str),
            price (what the buyer paid), fair_value, p10, p90 (the last nowcast published
            before the sale). p10/p90 are not used by the rules.
        sales: every clean sale, columns ts, item_key, price: where exits are looked up.
        index: daily market level indexed by day, used to mark open positions.

    Rules
        1. Eligible: a row with a timestamp, an item, a finite positive price and fair value,
           and an index level on its entry day (the day of its timestamp; a day missing inside
           the index carries the previous level forward). Every other row is filtered and
           counted under the first reason that applies.
        2. Each eligible scored sale is an opportunity to buy one unit at its price P0 on its
           entry day e. Buy-all buys every one. The strategy buys those the model marks
           undervalued: price <= fair_value * (1 - threshold) (models.signals.signals's BUY
           rule, rounded to 12 decimals so a price exactly at the threshold counts). The naive
           baseline, below_market, buys those with price <= market_median * (1 - threshold),
           the median price of `sales` in [t - 7 days, t) (strictly before the sale; none, so
           no buy, with fewer than INDEX_MIN_SALES sales there). Not the index: that is a low
           percentile of prices, not a typical price a fair value compares with.
        3. Exit: the item's next sale in `sales` strictly after the entry timestamp and at
           most horizon_days later (inclusive), on a day not after the index's last day, closes
           the position at that sale's price (exit kind "resale", the only realised evidence).
           Without one the position is marked to market and closed at
           P0 * index[x] / index[e], where x is the day of (entry timestamp + horizon_days)
           (kind "horizon"), or the index's last day when that day is later (kind
           "end_of_data"). The data's end is the index's last day: pass sales covering it.
        4. Daily mark: a position's value at the end of day d, e <= d < x, is
           P0 * index[d] / index[e]; on day x it is the exit value. Its daily return on day d
           is value(d) / value(d - 1) - 1 for e < d <= x, where value(e) = P0. A position
           that exits on its entry day (x = e) has one return, exit value / P0 - 1, on day e.
        5. Portfolio: on each day, the equal-weighted mean of the daily returns of the
           positions that have a return that day (daily rebalanced, no cash constraint, no
           fees). Days with no such position have return 0 and ARE counted in every measure.
        6. Calendar: every day from the first eligible entry day to the last exit day of any
           eligible position, the same for all three so their measures compare.
        7. Measures (see the small functions above): total return prod(1 + r) - 1;
           annualised return (1 + total) ** (365 / n_days) - 1; annualised volatility
           std(r, ddof=1) * sqrt(365); Sharpe mean / std(ddof=1) * sqrt(365) with rf = 0;
           Sortino mean / sqrt(mean(min(r, 0)^2)) * sqrt(365); max drawdown of the equity
           curve cumprod(1 + r) with the starting 1.0 as the first peak, a positive fraction;
           Calmar annualised return / max drawdown; hit rate = share of trades closed by
           resale whose exit price is above the entry price; hit rate vs market = share of
           them whose exit / entry price beats index[exit day] / index[entry day] (the index
           the positions are marked with, a low percentile); hit rate vs median = of those
           with a market median at both instants, the share whose exit / entry price beats
           market_median(exit instant) / market_median(entry instant), each the median of
           `sales` in the 7 days strictly before it. Undefined values are NaN (null in
           as_dict()).

    The `trades` frame of the result has one row per eligible scored sale (all strategies),
    with `undervalued` telling whether the strategy bought it and `below_market` whether the
    naive baseline did (`market_median` its reference).
    """
    n_rows = len(predictions)
    frame = predictions.reset_index(drop=True)
    ok, filtered = eligible_rows(frame)
    levels = daily_levels(index)
    entry_ts = naive_utc(frame["timestamp"])
    entry_day = entry_ts.normalize()
    entry_level = level_on(levels, entry_day)
    has_level = np.isfinite(entry_level)
    no_level = ok & ~has_level
    if no_level.any():
        filtered[FILTER_NO_INDEX] = int(no_level.sum())
    ok &= has_level

    rows = frame[ok]
    entry_ts = entry_ts[ok]
    entry_day = entry_day[ok]
    price = pd.to_numeric(rows["price"]).to_numpy(dtype=float)
    fair = pd.to_numeric(rows["fair_value"]).to_numpy(dtype=float)
    items = rows["item_id"].astype(str).to_numpy()
    undervalued = signals(price, fair, buy_below=threshold, sell_above=math.inf) == BUY
    # The naive baseline: the same BUY rule against the week's median sale instead of the model.
    median = market_median(entry_ts, sales)
    below_market = signals(price, median, buy_below=threshold, sell_above=math.inf) == BUY

    next_ts, next_price = next_sale(entry_ts, items, sales, horizon_days)
    end_day = levels.index[-1] if len(levels) else None
    next_day = pd.DatetimeIndex(next_ts).normalize()
    # A resale after the index ends cannot be placed on the calendar; the position ends with the data.
    resale = ~pd.isna(next_ts) & np.isfinite(next_price) & (next_price > 0)
    if end_day is not None:
        resale &= np.asarray(next_day <= end_day)
    horizon_day = (entry_ts + pd.Timedelta(days=horizon_days)).normalize()
    past_end = np.asarray(horizon_day > end_day) if end_day is not None else np.zeros(len(rows), dtype=bool)
    mark_day = horizon_day.where(~past_end, end_day) if len(rows) else horizon_day
    exit_day = pd.DatetimeIndex(np.where(resale, next_day, mark_day))
    exit_kind = np.where(resale, EXIT_RESALE, np.where(past_end, EXIT_END, EXIT_HORIZON))
    exit_level = level_on(levels, exit_day)
    mark_value = price * exit_level / entry_level[ok]
    exit_price = np.where(resale, next_price, mark_value)

    trades = pd.DataFrame(
        {
            "event_id": rows["event_id"].to_numpy() if "event_id" in rows else np.arange(len(rows)),
            "item_id": items,
            "entry_ts": entry_ts.to_numpy(),
            "entry_day": entry_day.to_numpy(),
            "entry_price": price,
            "entry_level": entry_level[ok],
            "fair_value": fair,
            "undervalued": undervalued,
            "exit_kind": exit_kind,
            "exit_ts": np.where(resale, next_ts, np.datetime64("NaT")).astype("datetime64[ns]"),
            "exit_day": exit_day.to_numpy(),
            "exit_price": exit_price,
            "exit_level": exit_level,
        },
        columns=TRADE_COLUMNS,
    )
    trades["trade_return"] = trades["exit_price"] / trades["entry_price"] - 1.0
    trades["market_median"] = median
    trades["below_market"] = below_market
    # The market median at the resale's instant, for hit_rate_vs_median; none for a mark.
    trades["exit_market_median"] = np.where(resale, market_median(trades["exit_ts"], sales), np.nan)

    if len(trades):
        start = pd.Timestamp(trades["entry_day"].min())
        end = pd.Timestamp(trades["exit_day"].max())
        calendar = pd.date_range(start, end, freq="D")
        cal_levels = levels.reindex(calendar).to_numpy(dtype=float)
    else:
        start = end = None
        calendar = pd.DatetimeIndex([], dtype="datetime64[ns]")
        cal_levels = np.zeros(0)

    n_eligible = int(ok.sum())
    return BacktestResult(
        threshold=threshold,
        horizon_days=horizon_days,
        n_rows=n_rows,
        n_eligible=n_eligible,
        n_filtered=n_rows - n_eligible,
        filtered=filtered,
        start=start,
        end=end,
        buy_all=_strategy_result("buy_all", calendar, cal_levels, trades),
        strategy=_strategy_result("strategy", calendar, cal_levels, trades[trades["undervalued"]]),
        below_market=_strategy_result("below_market", calendar, cal_levels, trades[trades["below_market"]]),
        trades=trades,
    )
