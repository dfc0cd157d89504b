"""How good and how steady are the BUY / SELL / HOLD alerts?

Pure: `signal_kpis` scores the signal each scored sale would have got against what the item
did next; `signal_stability` measures how often published signals flip between snapshots.
Written for any market given as (ts, item_key, price) observations: for CryptoPunks the
clean sales, for a market with daily prices per item (trading cards) those daily prices,
where "the next sale" becomes the next daily price. The rules are in docs/backtest.md too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.backtest import daily_levels, eligible_rows, level_on, next_sale
from models.signals import BUY, HOLD, SELL, signals
from models.times import naive_utc

SIGNAL_VALUES = (BUY, SELL, HOLD)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


@dataclass
class SignalKPIs:
    """Quality of the signals given at scored sales, judged by each item's next sale."""

    horizon_days: float
    gain: float
    buy_below: float
    sell_above: float
    n_rows: int
    n_events: int  # eligible events (finite positive price and fair value)
    n_filtered: int
    filtered: dict[str, int]
    n_known: int  # events whose outcome is known (resale within the horizon, index on both days)
    n_unknown: int
    unknown: dict[str, int]  # reason -> events
    coverage: float  # n_known / n_events
    distribution: dict[str, int]  # signal -> events, over all eligible events
    distribution_known: dict[str, int]  # signal -> events, over events with a known outcome
    signal_rate: float  # share of eligible events with BUY or SELL
    n_rose: int  # known outcomes with adjusted change >= gain
    n_fell: int  # known outcomes with adjusted change <= -gain
    base_rate_rise: float  # n_rose / n_known: what BUY precision must beat to mean anything
    base_rate_fall: float  # n_fell / n_known: the same for SELL
    buy_precision: float
    buy_recall: float
    sell_precision: float
    sell_recall: float
    outcomes: pd.DataFrame = field(repr=False)  # one row per eligible event, see signal_kpis()

    def as_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in self.__dict__.items() if k != "outcomes"}


def signal_kpis(
    events: pd.DataFrame,
    sales: pd.DataFrame,
    index: pd.Series | None,
    horizon_days: float = 30,
    gain: float = 0.10,
    buy_below: float = 0.10,
    sell_above: float = 0.15,
) -> SignalKPIs:
    """Precision and recall of BUY and SELL at scored sales, judged market-adjusted over a horizon.

    Inputs
        events: scored sales: timestamp (naive UTC), item_id, price, fair_value (the last
            nowcast published before the sale); event_id, p10, p90 may be present.
        sales: every observation of the market as columns ts, item_key, price (clean sales, or
            daily prices per item for a market quoted daily).
        index: daily market level indexed by day; None compares raw prices (no adjustment).

    Rules
        1. Eligible: timestamp, item, finite positive price and fair value; other rows are
           filtered and counted by the first reason that applies.
        2. Signal at an event: models.signals.signals(price, fair_value, buy_below, sell_above):
           BUY if price <= fair * (1 - buy_below), SELL if price >= fair * (1 + sell_above),
           else HOLD (deviation rounded to 12 decimals so an exact threshold counts).
        3. Outcome: the item's first observation in `sales` strictly after the event time and at
           most horizon_days later (inclusive). Market-adjusted change
               a = (price_next / price) / (index[day next] / index[day event]) - 1
           (a missing day inside the index carries the previous level forward). Unknown when
           there is no such observation ("no_resale_within_horizon") or the index has no
           level on either day ("no_index_level").
        4. Known outcomes only: rose = a >= gain, fell = a <= -gain (rounded to 12 decimals).
           BUY precision = BUY & rose / BUY; BUY recall = BUY & rose / rose;
           SELL precision = SELL & fell / SELL; SELL recall = SELL & fell / fell.
           NaN (null in as_dict()) when a denominator is 0. The base rates rose / known and
           fell / known are reported because a precision means something only above them.
        5. Over all eligible events: distribution of signals, signal rate = (BUY + SELL) / n,
           coverage = known / n.

    The `outcomes` frame has one row per eligible event: event_id, item_id, timestamp, price,
    fair_value, signal, next_ts, next_price, adjusted_change (NaN if unknown), known, rose, fell.
    """
    frame = events.reset_index(drop=True)
    ok, filtered = eligible_rows(frame)
    rows = frame[ok]
    ts = naive_utc(rows["timestamp"])
    price = pd.to_numeric(rows["price"]).to_numpy(dtype=float)
    fair = pd.to_numeric(rows["fair_value"]).to_numpy(dtype=float)
    items = rows["item_id"].astype(str).to_numpy()
    signal = signals(price, fair, buy_below, sell_above)

    next_ts, next_price = next_sale(ts, items, sales, horizon_days)
    has_next = ~pd.isna(next_ts) & np.isfinite(next_price) & (next_price > 0)
    if index is None:
        market_move = np.ones(len(rows))
    else:
        levels = daily_levels(index)
        with np.errstate(invalid="ignore"):
            market_move = level_on(levels, pd.DatetimeIndex(next_ts)) / level_on(levels, ts)
    has_level = np.isfinite(market_move)
    known = has_next & has_level
    adjusted = np.full(len(rows), np.nan)
    adjusted[known] = np.round(next_price[known] / price[known] / market_move[known] - 1.0, 12)
    rose = known & (adjusted >= gain)
    fell = known & (adjusted <= -gain)

    is_buy, is_sell = signal == BUY, signal == SELL
    n_known = int(known.sum())
    unknown: dict[str, int] = {}
    if (~has_next).any():
        unknown["no_resale_within_horizon"] = int((~has_next).sum())
    if (has_next & ~has_level).any():
        unknown["no_index_level"] = int((has_next & ~has_level).sum())

    outcomes = pd.DataFrame(
        {
            "event_id": rows["event_id"].to_numpy() if "event_id" in rows else np.arange(len(rows)),
            "item_id": items,
            "timestamp": ts.to_numpy(),
            "price": price,
            "fair_value": fair,
            "signal": signal,
            "next_ts": next_ts,
            "next_price": next_price,
            "adjusted_change": adjusted,
            "known": known,
            "rose": rose,
            "fell": fell,
        }
    )
    n_events = int(ok.sum())
    return SignalKPIs(
        horizon_days=horizon_days,
        gain=gain,
        buy_below=buy_below,
        sell_above=sell_above,
        n_rows=len(frame),
        n_events=n_events,
        n_filtered=len(frame) - n_events,
        filtered=filtered,
        n_known=n_known,
        n_unknown=n_events - n_known,
        unknown=unknown,
        coverage=_ratio(n_known, n_events),
        distribution={s: int((signal == s).sum()) for s in SIGNAL_VALUES},
        distribution_known={s: int(((signal == s) & known).sum()) for s in SIGNAL_VALUES},
        signal_rate=_ratio(int((is_buy | is_sell).sum()), n_events),
        n_rose=int(rose.sum()),
        n_fell=int(fell.sum()),
        base_rate_rise=_ratio(int(rose.sum()), n_known),
        base_rate_fall=_ratio(int(fell.sum()), n_known),
        buy_precision=_ratio(int((is_buy & rose).sum()), int((is_buy & known).sum())),
        buy_recall=_ratio(int((is_buy & rose).sum()), int(rose.sum())),
        sell_precision=_ratio(int((is_sell & fell).sum()), int((is_sell & known).sum())),
        sell_recall=_ratio(int((is_sell & fell).sum()), int(fell.sum())),
        outcomes=outcomes,
    )


@dataclass
class SignalStability:
    """How often an item's published signal changes from one of its snapshots to the next."""

    n_rows: int
    n_dropped: int  # rows without a snapshot time, item or signal, plus duplicate (snapshot, item) rows
    n_items: int
    n_snapshots: int
    n_pairs: int  # consecutive snapshot pairs, summed over items
    n_flips: int  # pairs whose signal differs
    flip_rate: float  # n_flips / n_pairs
    by_signal: dict[str, dict[str, float | int | None]]  # earlier signal -> n_pairs, n_flips, flip_rate
    n_runs: int
    mean_run_length: float  # snapshots per run of an unchanged signal
    mean_run_length_by_signal: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in self.__dict__.items()}


def signal_stability(history: pd.DataFrame) -> SignalStability:
    """Flip rate and run lengths of published signals.

    Input: history with columns snapshot_time, item_id, signal: the signal every published
    snapshot gave each item.

    Rules
        - Rows missing a snapshot time, an item or a signal are dropped; a repeated
          (snapshot_time, item_id) keeps its last row. Both are counted in n_dropped.
        - Per item, its rows are ordered by snapshot_time; each two consecutive rows form a
          pair (snapshots in which the item is absent are skipped, not counted as a change).
        - flip_rate = pairs whose signal differs / all pairs. by_signal groups pairs by the
          EARLIER signal: the chance that a BUY (SELL, HOLD) is gone by the next snapshot.
        - A run is a maximal stretch of one item's consecutive rows with the same signal; its
          length is the number of snapshots in it. mean_run_length averages over all runs,
          mean_run_length_by_signal over the runs of each signal. Runs touching the first or
          last snapshot are cut by the history window, so these are lower bounds.
    """
    n_rows = len(history)
    h = history[["snapshot_time", "item_id", "signal"]].dropna()
    h = h.assign(snapshot_time=naive_utc(h["snapshot_time"]), item_id=h["item_id"].astype(str))
    h = h.drop_duplicates(["snapshot_time", "item_id"], keep="last")
    h = h.sort_values(["item_id", "snapshot_time"], kind="stable")

    item = h["item_id"].to_numpy()
    sig = h["signal"].astype(str).to_numpy()
    same_item = item[1:] == item[:-1]
    changed = sig[1:] != sig[:-1]
    flips = same_item & changed
    earlier = sig[:-1]

    by_signal: dict[str, dict[str, float | int | None]] = {}
    for s in sorted(set(SIGNAL_VALUES) | set(sig)):
        pairs_s = same_item & (earlier == s)
        n_p, n_f = int(pairs_s.sum()), int((flips & pairs_s).sum())
        by_signal[s] = {"n_pairs": n_p, "n_flips": n_f, "flip_rate": _ratio(n_f, n_p)}

    # A run starts at each item's first row and wherever the signal changes within an item.
    starts = np.ones(len(h), dtype=bool)
    if len(h) > 1:
        starts[1:] = ~same_item | changed
    run_id = np.cumsum(starts) - 1
    run_length = np.bincount(run_id) if len(h) else np.zeros(0, dtype=int)
    run_signal = sig[starts]
    mean_by_signal = {
        s: float(run_length[run_signal == s].mean()) if (run_signal == s).any() else math.nan
        for s in sorted(set(SIGNAL_VALUES) | set(sig))
    }

    n_pairs = int(same_item.sum())
    return SignalStability(
        n_rows=n_rows,
        n_dropped=n_rows - len(h),
        n_items=int(pd.unique(item).size),
        n_snapshots=int(h["snapshot_time"].nunique()),
        n_pairs=n_pairs,
        n_flips=int(flips.sum()),
        flip_rate=_ratio(int(flips.sum()), n_pairs),
        by_signal=by_signal,
        n_runs=len(run_length),
        mean_run_length=float(run_length.mean()) if len(run_length) else math.nan,
        mean_run_length_by_signal=mean_by_signal,
    )
