"""Strategy backtest of a daily-priced market (trading cards): does holding the cards the model
calls cheap beat holding every card?

Pure: the caller supplies the forward card-days and every daily price; the functions return
numbers and curves. The rules are written out in `daily_backtest()` and in docs/cards.md
("Backtest"); the two must stay the same. The measures are models/backtest.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.backtest import (
    annualised_return,
    annualised_volatility,
    calmar,
    eligible_rows,
    equity_curve,
    max_drawdown,
    sharpe,
    sortino,
    strategy_dict,
    total_return,
)
from models.signals import BUY, signals

DAY = pd.Timedelta(days=1)
FILTER_NO_NEXT_PRICE = "no_price_next_day"


@dataclass
class DailyStrategyResult:
    """One strategy's held card-days and performance over the backtest calendar."""

    name: str
    n_trades: int  # card-days held (each for one day)
    n_up: int  # held card-days whose next day's price was higher
    hit_rate: float  # n_up / n_trades (NaN if none)
    total_return: float
    annualised_return: float
    annualised_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float
    n_days: int
    n_days_with_positions: int
    daily_returns: pd.Series = field(repr=False)
    equity: pd.Series = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return strategy_dict(self)


@dataclass
class DailyBacktestResult:
    """Both strategies on the same calendar, plus what was filtered and why."""

    threshold: float
    n_rows: int
    n_eligible: int
    n_filtered: int
    filtered: dict[str, int]  # reason -> rows
    start: pd.Timestamp | None  # first calendar day (the day after the first entry)
    end: pd.Timestamp | None  # last calendar day (the day after the last entry)
    buy_all: DailyStrategyResult
    strategy: DailyStrategyResult
    trades: pd.DataFrame = field(repr=False)  # one row per eligible card-day, see daily_backtest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold), "holding_days": 1, "n_rows": int(self.n_rows),
            "n_eligible": int(self.n_eligible), "n_filtered": int(self.n_filtered),
            "filtered": {k: int(v) for k, v in self.filtered.items()},
            "start": self.start.date().isoformat() if self.start is not None else None,
            "end": self.end.date().isoformat() if self.end is not None else None,
            "buy_all": self.buy_all.as_dict(), "strategy": self.strategy.as_dict(),
        }


def _strategy_result(name: str, calendar: pd.DatetimeIndex, trades: pd.DataFrame) -> DailyStrategyResult:
    booked = trades.groupby(trades["day"] + DAY)["trade_return"]
    returns = booked.mean().reindex(calendar, fill_value=0.0).to_numpy(dtype=float)
    held = booked.size().reindex(calendar, fill_value=0).to_numpy(dtype=int)
    equity = equity_curve(returns)
    ann, mdd = annualised_return(returns), max_drawdown(equity)
    n_up = int((trades["trade_return"] > 0).sum())
    return DailyStrategyResult(
        name=name, n_trades=len(trades), n_up=n_up, hit_rate=n_up / len(trades) if len(trades) else math.nan,
        total_return=total_return(returns), annualised_return=ann, annualised_volatility=annualised_volatility(returns),
        sharpe=sharpe(returns), sortino=sortino(returns), max_drawdown=mdd, calmar=calmar(ann, mdd),
        n_days=len(calendar), n_days_with_positions=int((held > 0).sum()),
        daily_returns=pd.Series(returns, index=calendar, name=f"{name}_return"),
        equity=pd.Series(equity, index=calendar, name=f"{name}_equity"),
    )


def daily_backtest(rows: pd.DataFrame, prices: pd.DataFrame, threshold: float = 0.10) -> DailyBacktestResult:
    """Hold what the model marks undervalued, one day at a time, against holding every priced card.

    Inputs
        rows: one forward card-day each: day (naive midnight), item_key, price p(D) (the day's market
            price), fair_value (from days before D only: models.daily_eval.replay_daily).
        prices: every daily price, columns day, item_key, price: where the next day's price is read.

    Rules
        1. Eligible: a row with a day, a card, a finite positive price and fair value, and a finite
           positive price of the same card on the next calendar day D+1. Every other row is filtered,
           counted under the first reason that applies (models.backtest.eligible_rows's reasons, then
           "no_price_next_day": a card-day the data cannot mark is held by neither strategy).
        2. Holdings: each day D, buy-all holds every eligible card-day; the strategy holds those with
           price <= fair_value x (1 - threshold) (the BUY rule of models.signals, which rounds so a
           price exactly at the threshold counts). Equal weight, rebalanced daily.
        3. A held card-day's return is p(D+1) / p(D) - 1, booked on day D+1: bought at the day's
           price, marked to market at the next day's.
        4. Portfolio return of day d: the equal-weighted mean of the returns booked on d; 0 on a day
           with none, which IS counted in every measure (as in models.backtest).
        5. Calendar: every day from the day after the first eligible D to the day after the last
           one, the same for both strategies.
        6. Measures: models.backtest's total_return, annualised_return, annualised_volatility,
           sharpe, sortino, max_drawdown (of equity_curve), calmar; hit rate = share of held
           card-days whose next price is higher. Undefined values are NaN (null in as_dict()).
    """
    frame = pd.DataFrame({"timestamp": pd.to_datetime(rows["day"]).dt.normalize(), "item_id": rows["item_key"],
                          "price": pd.to_numeric(rows["price"], errors="coerce"),
                          "fair_value": pd.to_numeric(rows["fair_value"], errors="coerce")}).reset_index(drop=True)
    ok, filtered = eligible_rows(frame)
    later = pd.DataFrame({"timestamp": pd.to_datetime(prices["day"]).dt.normalize() - DAY,
                          "item_id": prices["item_key"],
                          "next_price": pd.to_numeric(prices["price"], errors="coerce")})
    later = later.drop_duplicates(["timestamp", "item_id"], keep="last")  # as DailySeries.wide: last wins
    next_price = frame.merge(later, on=["timestamp", "item_id"], how="left")["next_price"].to_numpy(dtype=float)
    marked = np.isfinite(next_price) & (next_price > 0)
    unmarked = ok & ~marked
    if unmarked.any():
        filtered[FILTER_NO_NEXT_PRICE] = int(unmarked.sum())
    ok &= marked

    kept = frame[ok]
    price, fair = kept["price"].to_numpy(dtype=float), kept["fair_value"].to_numpy(dtype=float)
    trades = pd.DataFrame({
        "day": kept["timestamp"].to_numpy(), "item_key": kept["item_id"].to_numpy(), "price": price,
        "fair_value": fair, "next_price": next_price[ok],
        "undervalued": signals(price, fair, buy_below=threshold, sell_above=math.inf) == BUY,
    })
    trades["trade_return"] = trades["next_price"] / trades["price"] - 1.0
    if len(trades):
        start, end = trades["day"].min() + DAY, trades["day"].max() + DAY
        calendar = pd.date_range(start, end, freq="D")
    else:
        start = end = None
        calendar = pd.DatetimeIndex([], dtype="datetime64[ns]")
    return DailyBacktestResult(
        threshold=threshold, n_rows=len(frame), n_eligible=int(ok.sum()), n_filtered=int((~ok).sum()),
        filtered=filtered, start=start, end=end,
        buy_all=_strategy_result("buy_all", calendar, trades),
        strategy=_strategy_result("strategy", calendar, trades[trades["undervalued"]]),
        trades=trades,
    )
