"""One feature builder for training, nowcast and replay (no train/serve skew).

Every feature of an item at time t is computed from data strictly before t: sales with
ts < t, and daily market inputs of days before t's day (a day's floor is known only once
the day is over). The target is log(price / floor), so the model learns a premium over the
market rather than the raw floor, which breaks trees when the floor moves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

PREMIUM_WINDOW = pd.Timedelta(days=7)
ITEM_TYPES = ("Alien", "Ape", "Zombie", "Human")


@dataclass
class MarketData:
    """What the model may know: the items, clean sales and daily market inputs.

    Times are naive UTC datetime64 so numpy can search them.
    """

    items: pd.DataFrame  # index item_key (str); columns item_type, accessory_count, accessories (list)
    sales: pd.DataFrame  # columns event_id, ts, item_key, price; sorted by ts
    market: pd.DataFrame  # columns day (midnight), floor, eth_usd; sorted by day

    def before(self, t: pd.Timestamp) -> MarketData:
        """The market as it was known just before t."""
        return MarketData(
            self.items,
            self.sales[self.sales["ts"] < t],
            self.market[self.market["day"] < t.normalize()],
        )


class TraitVocabulary:
    """Trait columns and rarities, fixed at training time and reused when predicting."""

    def __init__(self, items: pd.DataFrame):
        counts: Counter[str] = Counter()
        for accessories in items["accessories"]:
            counts.update(accessories)
        n = max(len(items), 1)
        self.traits = sorted(counts)
        self.frequency = {t: counts[t] / n for t in self.traits}
        type_counts = items["item_type"].value_counts()
        self.type_frequency = {k: v / n for k, v in type_counts.items()}

    def item_features(self, items: pd.DataFrame) -> pd.DataFrame:
        index = {t: i for i, t in enumerate(self.traits)}
        onehot = np.zeros((len(items), len(self.traits)), dtype=np.float32)
        min_freq = np.ones(len(items))
        log_freq_sum = np.zeros(len(items))
        for row, accessories in enumerate(items["accessories"]):
            for trait in accessories:
                col = index.get(trait)
                if col is None:
                    continue
                onehot[row, col] = 1.0
                freq = self.frequency[trait]
                min_freq[row] = min(min_freq[row], freq)
                log_freq_sum[row] += np.log(freq)
        out = pd.DataFrame(onehot, index=items.index, columns=[f"trait:{t}" for t in self.traits])
        for kind in ITEM_TYPES:
            out[f"type:{kind}"] = (items["item_type"] == kind).astype(np.float32).to_numpy()
        out["type_log_frequency"] = np.log(items["item_type"].map(self.type_frequency).fillna(1e-4)).to_numpy()
        out["accessory_count"] = items["accessory_count"].astype(float).to_numpy()
        out["rarest_trait_log_frequency"] = np.log(min_freq)
        out["trait_log_frequency_sum"] = log_freq_sum
        return out


def floor_before(market: pd.DataFrame, times: pd.Series) -> np.ndarray:
    """The latest floor of a day strictly before each time's day (NaN if none)."""
    floors = market.dropna(subset=["floor"])
    days = floors["day"].to_numpy()
    values = floors["floor"].to_numpy(dtype=float)
    query_days = pd.DatetimeIndex(times).normalize().to_numpy()
    idx = np.searchsorted(days, query_days, side="left") - 1
    out = np.full(len(query_days), np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def eth_usd_before(market: pd.DataFrame, times: pd.Series) -> np.ndarray:
    rates = market.dropna(subset=["eth_usd"])
    days = rates["day"].to_numpy()
    query_days = pd.DatetimeIndex(times).normalize().to_numpy()
    idx = np.searchsorted(days, query_days, side="left") - 1
    out = np.full(len(query_days), np.nan)
    ok = idx >= 0
    out[ok] = rates["eth_usd"].to_numpy(dtype=float)[idx[ok]]
    return out


def sale_premiums(data: MarketData) -> pd.DataFrame:
    """Each sale's log premium over the floor known before it."""
    sales = data.sales
    floor = floor_before(data.market, sales["ts"])
    return pd.DataFrame(
        {"ts": sales["ts"].to_numpy(), "item_key": sales["item_key"].to_numpy(),
         "log_premium": np.log(sales["price"].to_numpy(dtype=float) / floor)}
    )


def trailing_stats(
    times: np.ndarray, values: np.ndarray, query_times: np.ndarray, window: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Median of `values` and their count over [t - window, t) for each query time t.
    `times` must be sorted."""
    unique_q, inverse = np.unique(query_times, return_inverse=True)
    hi = np.searchsorted(times, unique_q, side="left")
    lo = np.searchsorted(times, unique_q - np.timedelta64(window), side="left")
    medians = np.full(len(unique_q), np.nan)
    counts = (hi - lo).astype(float)
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if b > a:
            window_values = values[a:b]
            window_values = window_values[np.isfinite(window_values)]
            if len(window_values):
                medians[i] = np.median(window_values)
    return medians[inverse], counts[inverse]


def build_features(data: MarketData, vocab: TraitVocabulary, queries: pd.DataFrame) -> pd.DataFrame:
    """Features for each (item_key, ts) in `queries`, from data strictly before ts.

    Returns a frame aligned with `queries` (same index) including `floor`, the floor the
    target and the prediction are relative to.
    """
    q = queries[["item_key", "ts"]].copy()
    q["ts"] = pd.to_datetime(q["ts"]).astype("datetime64[ns]")
    q["_order"] = np.arange(len(q))
    items = data.items.loc[q["item_key"]]
    feats = vocab.item_features(items).reset_index(drop=True)

    floor = floor_before(data.market, q["ts"])
    feats["log_floor_change_7d"] = np.log(floor / floor_before(data.market, q["ts"] - PREMIUM_WINDOW))
    feats["log_eth_usd"] = np.log(eth_usd_before(data.market, q["ts"]))

    premiums = sale_premiums(data)
    median_premium, n_recent = trailing_stats(
        premiums["ts"].to_numpy(), premiums["log_premium"].to_numpy(), q["ts"].to_numpy(), PREMIUM_WINDOW
    )
    feats["market_premium_7d"] = median_premium
    feats["sales_count_7d"] = n_recent

    # The item's own last sale before t, as a premium over the floor of its time.
    history = premiums.rename(columns={"ts": "last_ts", "log_premium": "last_log_premium"})
    history["last_price"] = data.sales["price"].to_numpy(dtype=float)
    history = history.sort_values("last_ts", kind="stable")
    joined = pd.merge_asof(
        q.sort_values("ts", kind="stable"),
        history,
        left_on="ts",
        right_on="last_ts",
        by="item_key",
        allow_exact_matches=False,
        direction="backward",
    ).sort_values("_order")
    feats["last_sale_log_premium"] = joined["last_log_premium"].to_numpy()
    age = (joined["ts"] - joined["last_ts"]).dt.total_seconds().to_numpy() / 86400.0
    feats["last_sale_age_days"] = age
    feats["last_sale_excess_premium"] = feats["last_sale_log_premium"] - feats["market_premium_7d"]

    feats.index = queries.index
    feats["floor"] = floor
    feats["last_price"] = joined["last_price"].to_numpy()
    feats["last_sale_at"] = joined["last_ts"].to_numpy()
    return feats


# Columns of build_features() that describe the query rather than feed the estimator.
CONTEXT_COLUMNS = ("floor", "last_price", "last_sale_at")


def model_columns(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if c not in CONTEXT_COLUMNS]
