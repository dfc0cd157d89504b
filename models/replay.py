"""Replay: step the live loop through a past period exactly as production would, and score
every sale against the last nowcast published *before* it.

At each tick t (the cadence), in time order:
1. the market known at t is every sale with ts < t and the daily inputs of days before t;
2. the retrain rule runs: when the champion's training data is older than
   `retrain_max_age`, a new model is trained on the market known at t and serves from t on;
3. a nowcast is published at t;
4. every sale with t < ts <= next tick is scored against that nowcast, and so is every ask
   (a priced listing event) listed then, when the market holds listings
   (models.listings.listing_history): fairvalue/evaluation.py judges those (models/ask_kpis.py).

The window scored is [start, end), as `fairvalue replay --from --to` says: a sale exactly at
`end` is left to the next window, and one exactly at `start` is scored too. That one came with
the first tick, so no nowcast of the window was published before it: it is scored against a
nowcast published one cadence earlier, by a model trained then, which serves only that nowcast
(the window's first model is still trained at `start`, so the rest of the replay is the same
with or without such a sale).

To keep sub-daily cadences affordable, a tick values the items that sell before the next
tick (a prediction depends only on its own item and the market, so this equals reading them
from a full snapshot); a full-universe snapshot is taken once a day for signal history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models import estimator
from models.features import MarketData
from models.listings import REPLAY_LISTING_COLUMNS
from models.nowcast import value_all_items
from models.signals import signals
from models.times import HOUR, SECOND

# One row per scored sale (`fairvalue replay --export`); each column is described in docs/model.md
# ("The replay's export"). Two signals, since they answer different questions: `published_signal`
# is what the snapshot told a reader before the sale (read from the item's previous sale or an open
# ask, models.signals.market_signals); `sale_signal` is the scored sale's own price against the fair
# value (models.signals.signals), the one the report's signals and the backtest judge.
EXPORT_COLUMNS = [
    "event_id", "timestamp", "time_precision", "item_id", "price", "fair_value", "p10", "p90", "floor",
    "published_signal", "sale_signal", "snapshot_id", "snapshot_published_at", "model_version",
]


@dataclass
class ReplayConfig:
    start: pd.Timestamp
    end: pd.Timestamp
    cadence: pd.Timedelta = pd.Timedelta(days=1)
    retrain_max_age: pd.Timedelta = pd.Timedelta(days=7)
    params: estimator.TrainParams = field(default_factory=estimator.TrainParams)
    buy_below: float = 0.10
    sell_above: float = 0.15
    signal_max_age_days: float = 30.0
    daily_signal_history: bool = True
    market_stale_after_days: float | None = None  # see models.nowcast.valuation_moment


ASK_COLUMNS = ["event_id", "timestamp", "item_id", "source", "price", "expires_at", "fair_value", "p10", "p90",
               "snapshot_id", "snapshot_published_at", "model_version"]


@dataclass
class ReplayResult:
    predictions: pd.DataFrame  # one row per scored sale: EXPORT_COLUMNS
    signal_history: pd.DataFrame  # snapshot_time, item_id, signal: the daily full snapshots
    trainings: list[dict]  # when each model was trained and on what (times as naive UTC Timestamps)
    asks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ASK_COLUMNS))  # one row per valued ask


def ticks(start: pd.Timestamp, end: pd.Timestamp, cadence: pd.Timedelta) -> list[pd.Timestamp]:
    return list(pd.date_range(start, end, freq=cadence, inclusive="left"))


def replay(
    data: MarketData, config: ReplayConfig, progress: Callable[[int, int], None] | None = None
) -> ReplayResult:
    times = ticks(config.start, config.end, config.cadence)
    # Computed once for the whole data: each tick's market (MarketData.before) then slices them
    # instead of computing them again (a quarter at 30m: 4,400 ticks, 23 s of 238).
    data.robust_market()
    data.context()
    sales = data.sales
    events = data.listings.events if data.listings is not None else pd.DataFrame(columns=REPLAY_LISTING_COLUMNS)
    asks = events[events["price"].notna()]
    valued_asks: list[pd.DataFrame] = []
    model, trained_at, version = None, None, 0
    trainings: list[dict] = []
    scored: list[pd.DataFrame] = []
    history: list[pd.DataFrame] = []
    last_full_day = None
    if (sales["ts"] == config.start).any() or (asks["ts"] == config.start).any():
        times = [config.start - config.cadence, *times]  # values only the events at `start` (docstring)
    for k, t in enumerate(times):
        known = data.before(t)
        if model is None or t == config.start or t - trained_at >= config.retrain_max_age:
            model = estimator.fit(known, config.params)
            trained_at, version = t, version + 1
            trainings.append({"model_version": version, "trained_at": t, "data_end": known.sales["ts"].max(),
                              "n_train": len(known.sales)})
        next_t = times[k + 1] if k + 1 < len(times) else config.end
        window = sales[(sales["ts"] > t) & (sales["ts"] <= next_t) & _in_window(sales["ts"], config)]
        listed = asks[(asks["ts"] > t) & (asks["ts"] <= next_t) & _in_window(asks["ts"], config)]
        snapshot_id = k + 1
        full = None
        if config.daily_signal_history and t >= config.start and t.normalize() != last_full_day:
            last_full_day = t.normalize()
            full = value_all_items(model, known, t, config.buy_below, config.sell_above,
                                   config.signal_max_age_days, stale_after_days=config.market_stale_after_days)
            history.append(pd.DataFrame({"snapshot_time": t, "item_id": full["item_key"], "signal": full["signal"]}))
        if not (window.empty and listed.empty):
            if full is None:  # else the snapshot of this tick already values every item
                wanted = pd.unique(pd.concat([window["item_key"], listed["item_key"]]).astype(str))
                full = value_all_items(model, known, t, config.buy_below, config.sell_above,
                                       config.signal_max_age_days, item_keys=wanted,
                                       stale_after_days=config.market_stale_after_days)
            tick = full.set_index("item_key")
            published = {"snapshot_id": snapshot_id, "snapshot_published_at": t, "model_version": version}
            if not listed.empty:
                valued_asks.append(_valued_asks(listed, tick, published))
            if not window.empty:
                scored.append(_scored_sales(window, tick, published, config))
        if progress:
            progress(k + 1, len(times))
    predictions = pd.concat(scored, ignore_index=True) if scored else pd.DataFrame(columns=EXPORT_COLUMNS)
    signal_history = pd.concat(history, ignore_index=True) if history else pd.DataFrame(
        columns=["snapshot_time", "item_id", "signal"])
    valued = pd.concat(valued_asks, ignore_index=True) if valued_asks else pd.DataFrame(columns=ASK_COLUMNS)
    return ReplayResult(predictions, signal_history, trainings, valued)


def _in_window(ts: pd.Series, config: ReplayConfig) -> pd.Series:
    """The replay scores [start, end): `--to` is exclusive."""
    return (ts >= config.start) & (ts < config.end)


def _scored_sales(window: pd.DataFrame, tick: pd.DataFrame, published: dict, config: ReplayConfig) -> pd.DataFrame:
    """The tick's sales (EXPORT_COLUMNS), each with its item's value in `tick`."""
    values = tick.loc[window["item_key"].to_numpy()]
    price = window["price"].to_numpy(dtype=float)
    fair_value = values["fair_value"].to_numpy(dtype=float)
    hourly = (window["hour_precision"].to_numpy(dtype=bool) if "hour_precision" in window
              else np.zeros(len(window), dtype=bool))
    return pd.DataFrame({
        "event_id": window["event_id"].to_numpy(),
        "timestamp": window["ts"].to_numpy(),
        "time_precision": np.where(hourly, HOUR, SECOND),
        "item_id": window["item_key"].to_numpy(),
        "price": price,
        "fair_value": fair_value,
        "p10": values["p10"].to_numpy(),
        "p90": values["p90"].to_numpy(),
        "floor": values["floor"].to_numpy(),
        "published_signal": values["signal"].to_numpy(),
        "sale_signal": signals(price, fair_value, config.buy_below, config.sell_above),
        **published,
    })


def _valued_asks(listed: pd.DataFrame, tick: pd.DataFrame, published: dict) -> pd.DataFrame:
    """The asks listed before the next tick (ASK_COLUMNS), each with its item's value in `tick`."""
    values = tick.loc[listed["item_key"].astype(str).to_numpy()]
    return pd.DataFrame({
        "event_id": listed["event_id"].to_numpy(), "timestamp": listed["ts"].to_numpy(),
        "item_id": listed["item_key"].to_numpy(), "source": listed["source"].to_numpy(),
        "price": listed["price"].to_numpy(dtype=float), "expires_at": listed["expires_at"].to_numpy(),
        "fair_value": values["fair_value"].to_numpy(), "p10": values["p10"].to_numpy(),
        "p90": values["p90"].to_numpy(), **published,
    })
