"""Value every item of a collection at one moment with one model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.estimator import FairValueModel
from models.features import MarketData
from models.signals import signals


def value_all_items(
    model: FairValueModel,
    data: MarketData,
    as_of: pd.Timestamp,
    buy_below: float,
    sell_above: float,
    signal_max_age_days: float,
    item_keys=None,
    threads: int | None = None,
) -> pd.DataFrame:
    """One row per item (or per key in `item_keys`): fair value, band and signal at `as_of`,
    from data strictly before it.

    The signal compares the item's last sale with its fair value, and only when that sale is
    recent enough to still be a market price.
    """
    keys = data.items.index.to_numpy() if item_keys is None else item_keys
    queries = pd.DataFrame({"item_key": keys, "ts": as_of})
    values = model.predict(data, queries, threads)
    age_days = (np.datetime64(as_of) - values["last_sale_at"].to_numpy()) / np.timedelta64(1, "D")
    recent_price = np.where(age_days <= signal_max_age_days, values["last_price"].to_numpy(dtype=float), np.nan)
    values["signal"] = signals(recent_price, values["fair_value"].to_numpy(), buy_below, sell_above)
    values.insert(0, "item_key", queries["item_key"].to_numpy())
    return values.reset_index(drop=True)
