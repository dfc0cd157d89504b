"""Value every item of a collection at one moment with one model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.estimator import FairValueModel
from models.features import MarketData
from models.listings import open_asks
from models.signals import market_signals
from models.times import stale_limited


def valuation_moment(data: MarketData, as_of: pd.Timestamp, stale_after_days: float | None) -> pd.Timestamp:
    """The moment items are valued at for a nowcast asked for at `as_of`: `as_of` itself, unless
    the market has been silent (no sale, no floor) for longer than `stale_after_days` before it;
    then that long after its last input, so the values stay those of the last market known.

    The model learned from markets that traded. Valued years after its data stop, every window
    and age feature lies past anything it saw: with the bundled sales (to 2021-12-31) valued in
    December 2026, the median punk read 465 ETH, against 78 at the data's end. Uses only data
    before `as_of`, so the explanation of a snapshot finds the same moment again."""
    if not stale_after_days:
        return as_of
    data = data.known_at(as_of)
    # A day of ETH/USD alone is no floor: the market's own inputs are its sales and its floor.
    sale_times, days = data.sales["ts"], data.market.loc[data.market["floor"].notna(), "day"]
    last_sale = sale_times[sale_times < as_of].max()  # NaT when there is none
    last_floor = days[days < as_of.normalize()].max() + pd.Timedelta(days=1)  # a day's floor is known once it is over
    inputs = [t for t in (last_sale, last_floor) if pd.notna(t)]
    return stale_limited(as_of, max(inputs) if inputs else None, stale_after_days)


def value_all_items(
    model: FairValueModel,
    data: MarketData,
    as_of: pd.Timestamp,
    buy_below: float,
    sell_above: float,
    signal_max_age_days: float,
    item_keys=None,
    threads: int | None = None,
    stale_after_days: float | None = None,
    asks_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per item (or per key in `item_keys`): fair value, band and signal at `as_of`
    (or at the last market known, see `valuation_moment`), from data strictly before it.

    The signal compares the item's last sale, when it is at most `signal_max_age_days` old, or
    an open ask (a listing it can be bought at, models/listings.py) with its fair value
    (models.signals.market_signals); `signal_basis` and `deviation` say which price it read and
    how far from the unrounded value (a snapshot records them: its rounded values could read the
    other side of a threshold). `ask_price` / `ask_at` name the ask open at `asks_at` (default: `as_of`;
    NaN / NaT: none), which a silent market's valuation moment does not move: an ask is a price
    at the time it is read.
    """
    asks_at = as_of if asks_at is None else asks_at
    as_of = valuation_moment(data, as_of, stale_after_days)
    data = data.known_at(as_of)  # no sale of an hour not over yet (a replay's tick reads none either)
    keys = data.items.index.to_numpy() if item_keys is None else item_keys
    # At nanoseconds, the unit of every other time of the features: a live moment is the caller's
    # clock, in microseconds, and features.naive_times converted such a column (8 ms a 10k nowcast).
    queries = pd.DataFrame({"item_key": keys, "ts": as_of.as_unit("ns")})
    values = model.predict(data, queries, threads)
    last_sale_at = values["last_sale_at"].to_numpy(dtype="datetime64[ns]")
    age_days = (np.datetime64(as_of) - last_sale_at) / np.timedelta64(1, "D")
    ask_price, ask_at = open_asks(data.listings, queries["item_key"].to_numpy(), asks_at)
    values["signal"], values["signal_basis"], values["deviation"] = market_signals(
        ask_price, values["last_price"].to_numpy(dtype=float), age_days, values["fair_value"].to_numpy(), buy_below,
        sell_above, signal_max_age_days)
    values["ask_price"], values["ask_at"] = ask_price, ask_at
    values.insert(0, "item_key", queries["item_key"].to_numpy())
    return values.reset_index(drop=True)
