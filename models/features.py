"""One feature builder for training, nowcast and replay (no train/serve skew).

Every feature of an item at time t is computed from data strictly before t: sales with
ts < t, and daily market inputs of days before t's day (a day's floor is known only once
the day is over). The target is log(price / floor), so the model learns a premium over the
market rather than the raw floor, which breaks trees when the floor moves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.market_index import robust_floor, sales_index, trailing_quantiles

PREMIUM_WINDOW = pd.Timedelta(days=7)
ITEM_TYPES = ("Alien", "Ape", "Zombie", "Human")


@dataclass(frozen=True)
class CompsWindow:
    """Which sales count as comparables: the last k of the group within max_age before t."""

    k: int
    max_age: pd.Timedelta


COMPS_TRAIT = CompsWindow(k=15, max_age=pd.Timedelta(days=180))  # items sharing the rarest trait
COMPS_TYPE = CompsWindow(k=30, max_age=pd.Timedelta(days=365))  # items of the same type
COMPS_TYPE_COUNT = CompsWindow(k=30, max_age=pd.Timedelta(days=180))  # same type and accessory count


@dataclass
class MarketData:
    """What the model may know: the items, clean sales and daily market inputs.

    Times are naive UTC datetime64 so numpy can search them.
    """

    items: pd.DataFrame  # index item_key (str); columns item_type, accessory_count, accessories (list)
    sales: pd.DataFrame  # columns event_id, ts, item_key, price; sorted by ts
    market: pd.DataFrame  # columns day (midnight), floor, eth_usd; sorted by day

    _context: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def before(self, t: pd.Timestamp) -> MarketData:
        """The market as it was known just before t."""
        known = self.sales["ts"] < t
        return MarketData(
            self.items,
            self.sales[known],
            self.market[self.market["day"] < t.normalize()],
            # Each sale's context uses only data before that sale, so the context of the
            # market known at t is a slice of the full one: no need to compute it again.
            None if self._context is None else self._context[known.to_numpy()],
        )

    def context(self) -> pd.DataFrame:
        """Per-sale context (see sale_context), computed once per MarketData."""
        if self._context is None:
            self._context = sale_context(self)
        return self._context


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

    def _pairs(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(row, trait column) for every known trait of every item, vectorised: a Python loop
        over items cost ~17 s per million items."""
        exploded = items["accessories"].explode()
        codes = pd.Categorical(exploded.to_numpy(), categories=self.traits).codes
        rows = np.repeat(np.arange(len(items)), items["accessories"].str.len().fillna(0).to_numpy(dtype=int)
                         .clip(min=1))
        known = codes >= 0
        return rows[known], codes[known].astype(np.int64)

    def rarest_trait(self, items: pd.DataFrame, rank: int = 0) -> pd.Series:
        """Each item's rarest known trait (rank 1: the second rarest; "" when it has none); ties
        go to the first name."""
        rows, cols = self._pairs(items)
        freq = np.array([self.frequency[t] for t in self.traits])
        # traits are sorted by name, so ordering by (row, frequency, column) breaks ties by name.
        order = np.lexsort((cols, freq[cols], rows))
        rows, cols = rows[order], cols[order]
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = rows[1:] != rows[:-1]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(rows)), 0))
        picked = (np.arange(len(rows)) - group_start) == rank
        out = np.full(len(items), "", dtype=object)
        out[rows[picked]] = np.asarray(self.traits, dtype=object)[cols[picked]]
        return pd.Series(out, index=items.index, dtype=object, name="accessories")

    def item_features(self, items: pd.DataFrame) -> pd.DataFrame:
        rows, cols = self._pairs(items)
        freq = np.array([self.frequency[t] for t in self.traits])
        onehot = np.zeros((len(items), len(self.traits)), dtype=np.float32)
        onehot[rows, cols] = 1.0
        min_freq = np.ones(len(items))
        np.minimum.at(min_freq, rows, freq[cols])
        log_freq_sum = np.bincount(rows, weights=np.log(freq[cols]), minlength=len(items)) if len(rows) else \
            np.zeros(len(items))
        out = pd.DataFrame(onehot, index=items.index, columns=[f"trait:{t}" for t in self.traits])
        extra = {f"type:{kind}": (items["item_type"] == kind).astype(np.float32).to_numpy() for kind in ITEM_TYPES}
        extra["type_log_frequency"] = np.log(items["item_type"].map(self.type_frequency).fillna(1e-4)).to_numpy()
        extra["accessory_count"] = items["accessory_count"].astype(float).to_numpy()
        extra["rarest_trait_log_frequency"] = np.log(min_freq)
        extra["trait_log_frequency_sum"] = log_freq_sum
        return pd.concat([out, pd.DataFrame(extra, index=items.index)], axis=1)


def value_before(market: pd.DataFrame, column: str, times: pd.Series) -> np.ndarray:
    """The latest value of a daily market column on a day strictly before each time's day
    (a day's value is known only once the day is over); NaN if none."""
    known = market.dropna(subset=[column])
    days = known["day"].to_numpy()
    query_days = pd.DatetimeIndex(times).normalize().to_numpy()
    idx = np.searchsorted(days, query_days, side="left") - 1
    out = np.full(len(query_days), np.nan)
    ok = idx >= 0
    out[ok] = known[column].to_numpy(dtype=float)[idx[ok]]
    return out


def floor_before(market: pd.DataFrame, times: pd.Series) -> np.ndarray:
    """The floor known before each time. Callers pass the cleaned market (`robust_floor`)."""
    return value_before(market, "floor", times)


def eth_usd_before(market: pd.DataFrame, times: pd.Series) -> np.ndarray:
    return value_before(market, "eth_usd", times)


def sale_context(data: MarketData) -> pd.DataFrame:
    """Per sale: its log premium over the floor known before it, the market's median premium
    over the week before it, and the difference (how far this item sold above the market)."""
    sales = data.sales
    times = sales["ts"].to_numpy()
    floor = floor_before(robust_floor(data.market), sales["ts"])
    log_premium = np.log(sales["price"].to_numpy(dtype=float) / floor)
    market, _ = trailing_quantiles(times, log_premium, times, PREMIUM_WINDOW)
    return pd.DataFrame(
        {"ts": times, "item_key": sales["item_key"].to_numpy(), "price": sales["price"].to_numpy(dtype=float),
         "log_premium": log_premium, "excess_premium": log_premium - market[:, 0]}
    )


def market_features(data: MarketData, context: pd.DataFrame, query_times: np.ndarray) -> pd.DataFrame:
    """The market's state just before each query time: recent premium of sales over the floor
    (a floor that lags shows up here), floor momentum and volatility, activity, ETH/USD."""
    times = context["ts"].to_numpy()
    premium = context["log_premium"].to_numpy()
    out = {}
    for days in (1, 3, 7, 30):
        qs, counts = trailing_quantiles(times, premium, query_times, pd.Timedelta(days=days), (0.2, 0.5))
        out[f"market_premium_q20_{days}d"] = qs[:, 0]
        out[f"market_premium_{days}d"] = qs[:, 1]
        out[f"sales_count_{days}d"] = counts
    ts = pd.Series(query_times)
    floor = floor_before(data.market, ts)
    for days in (7, 30):
        out[f"log_floor_change_{days}d"] = np.log(floor / floor_before(data.market, ts - pd.Timedelta(days=days)))
    # Volatility of the daily floor over the last 30 days known before t.
    floors = data.market.dropna(subset=["floor"])
    daily = pd.Series(np.log(floors["floor"].to_numpy(dtype=float)), index=floors["day"]).diff()
    vol = daily.rolling(30, min_periods=5).std()
    idx = np.searchsorted(vol.index.to_numpy(), pd.DatetimeIndex(query_times).normalize().to_numpy()) - 1
    out["floor_volatility_30d"] = np.where(idx >= 0, vol.to_numpy()[np.clip(idx, 0, None)], np.nan)
    eth = eth_usd_before(data.market, ts)
    out["log_eth_usd"] = np.log(eth)
    out["log_eth_usd_change_7d"] = np.log(eth / eth_usd_before(data.market, ts - pd.Timedelta(days=7)))
    return pd.DataFrame(out)


def window_medians(g_times: np.ndarray, g_excess: np.ndarray, t: np.ndarray, k: int,
                   max_age: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """For each query time t: median of the last k values (within max_age) of one group's sales
    strictly before t, and how many there were. g_times must be sorted."""
    padded = np.append(g_excess, np.nan)
    hi = np.searchsorted(g_times, t, "left")
    lo = np.maximum(np.searchsorted(g_times, t - np.timedelta64(max_age), "left"), hi - k)
    # Window of up to k sales before each query, as a (queries x k) matrix padded with NaN.
    idx = lo[:, None] + np.arange(k)[None, :]
    window = padded[np.where(idx < hi[:, None], idx, len(padded) - 1)]
    found = np.isfinite(window).sum(axis=1)
    medians = np.full(len(t), np.nan)
    ok = found > 0
    with np.errstate(all="ignore"):
        medians[ok] = np.nanmedian(window[ok], axis=1)
    return medians, found


def comparable_premiums(
    context: pd.DataFrame, group_of_sale: np.ndarray, query_groups: np.ndarray, query_times: np.ndarray,
    window: CompsWindow = COMPS_TRAIT,
) -> tuple[np.ndarray, np.ndarray]:
    """Median excess premium of the last k sales before t (within max_age) in the query's group
    (e.g. items sharing its rarest trait), and how many were found."""
    k, max_age = window.k, window.max_age
    medians = np.full(len(query_groups), np.nan)
    counts = np.zeros(len(query_groups))
    times = context["ts"].to_numpy()
    excess = context["excess_premium"].to_numpy()
    order = np.argsort(group_of_sale, kind="stable")
    sorted_groups = group_of_sale[order]
    for group in np.unique(query_groups):
        if group == "":
            continue
        a, b = np.searchsorted(sorted_groups, group, "left"), np.searchsorted(sorted_groups, group, "right")
        members = order[a:b]  # indices into context, in time order (context is sorted by ts)
        if not len(members):
            continue
        queries = np.flatnonzero(query_groups == group)
        medians[queries], counts[queries] = window_medians(times[members], excess[members], query_times[queries],
                                                           k, max_age)
    return medians, counts


def all_trait_comps(context: pd.DataFrame, items: pd.DataFrame, vocab: TraitVocabulary, query_keys: np.ndarray,
                    query_times: np.ndarray, window: CompsWindow = COMPS_TRAIT) -> tuple[np.ndarray, np.ndarray]:
    """Over every trait of each query item, the median excess premium of the last k sales
    (within max_age) of items with that trait: their mean and max over the item's traits (NaN
    when no trait has comps). The rarest trait alone misses what the others add."""
    member = vocab.item_features(items)[[f"trait:{t}" for t in vocab.traits]] > 0
    sale_member = member.reindex(context["item_key"], fill_value=False).to_numpy(dtype=bool)
    query_member = member.reindex(query_keys, fill_value=False).to_numpy(dtype=bool)
    times = context["ts"].to_numpy()
    excess = context["excess_premium"].to_numpy()
    stack = np.full((len(query_keys), 8), np.nan)  # punks have at most 7 accessories
    filled = np.zeros(len(query_keys), dtype=int)
    for j in range(len(vocab.traits)):
        sale_in = sale_member[:, j]
        query_in = np.flatnonzero(query_member[:, j])
        if not sale_in.any() or not len(query_in):
            continue
        med, _ = window_medians(times[sale_in], excess[sale_in], query_times[query_in], window.k, window.max_age)
        cols = np.minimum(filled[query_in], stack.shape[1] - 1)
        stack[query_in, cols] = med
        filled[query_in] += 1
    some = np.isfinite(stack).any(axis=1)
    means, highs = np.full(len(query_keys), np.nan), np.full(len(query_keys), np.nan)
    means[some] = np.nanmean(stack[some], axis=1)
    highs[some] = np.nanmax(stack[some], axis=1)
    return means, highs


def build_features(data: MarketData, vocab: TraitVocabulary, queries: pd.DataFrame) -> pd.DataFrame:
    """Features for each (item_key, ts) in `queries`, from data strictly before ts.

    Returns a frame aligned with `queries` (same index) including `floor`, the floor the
    target and the prediction are relative to.
    """
    q = queries[["item_key", "ts"]].copy()
    q["ts"] = pd.to_datetime(q["ts"]).astype("datetime64[ns]")
    q["_order"] = np.arange(len(q))
    query_times = q["ts"].to_numpy()
    items = data.items.loc[q["item_key"]]
    feats = vocab.item_features(items).reset_index(drop=True)

    context = data.context()
    data = MarketData(data.items, data.sales, robust_floor(data.market), context)
    # Market features depend on the time only: compute them once per distinct time (a nowcast
    # asks for one time for every item) and spread them over the queries.
    times, at = np.unique(query_times, return_inverse=True)
    market = market_features(data, context, times)
    index = sales_index(data.sales, pd.DatetimeIndex(times)).to_numpy()
    market["log_index_over_floor"] = np.log(index / floor_before(data.market, pd.Series(times)))
    feats = pd.concat([feats, market.iloc[at.ravel()].reset_index(drop=True)], axis=1)

    # The item's own last sale before t, as a premium over the floor of its time.
    history = context.rename(columns={"ts": "last_ts", "log_premium": "last_log_premium",
                                      "excess_premium": "last_excess_premium", "price": "last_price"})
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
    feats["last_sale_excess_premium"] = joined["last_excess_premium"].to_numpy()
    feats["last_sale_age_days"] = (joined["ts"] - joined["last_ts"]).dt.total_seconds().to_numpy() / 86400.0

    # Comparable sales: recent sales of items that share this item's rarest trait, and of its type.
    rarest = vocab.rarest_trait(data.items)
    sale_rarest = rarest.reindex(context["item_key"]).fillna("").to_numpy(dtype=object)
    query_rarest = rarest.reindex(q["item_key"]).fillna("").to_numpy(dtype=object)
    feats["comps_trait_excess_premium"], feats["comps_trait_count"] = comparable_premiums(
        context, sale_rarest, query_rarest, query_times, COMPS_TRAIT)
    sale_type = data.items["item_type"].reindex(context["item_key"]).fillna("").to_numpy(dtype=object)
    query_type = items["item_type"].fillna("").to_numpy(dtype=object)
    feats["comps_type_excess_premium"], feats["comps_type_count"] = comparable_premiums(
        context, sale_type, query_type, query_times, COMPS_TYPE)

    # ... of its second-rarest trait, of its type with the same accessory count, and over all its traits.
    second = vocab.rarest_trait(data.items, rank=1)
    feats["comps_trait2_excess_premium"], feats["comps_trait2_count"] = comparable_premiums(
        context, second.reindex(context["item_key"]).fillna("").to_numpy(dtype=object),
        second.reindex(q["item_key"]).fillna("").to_numpy(dtype=object), query_times, COMPS_TRAIT)
    type_count = data.items["item_type"].astype(str) + "|" + data.items["accessory_count"].astype(str)
    feats["comps_type_count_excess_premium"], feats["comps_type_count_count"] = comparable_premiums(
        context, type_count.reindex(context["item_key"]).fillna("").to_numpy(dtype=object),
        type_count.reindex(q["item_key"]).fillna("").to_numpy(dtype=object), query_times, COMPS_TYPE_COUNT)
    feats["comps_traits_mean_excess_premium"], feats["comps_traits_max_excess_premium"] = all_trait_comps(
        context, data.items, vocab, q["item_key"].to_numpy(), query_times)

    # The item's last price carried forward by the market's move since: last price x (sales
    # index now / sales index then), over the floor now.
    last_ts = pd.DatetimeIndex(joined["last_ts"].to_numpy())
    index_then = np.full(len(q), np.nan)
    if (~last_ts.isna()).any():
        index_then[~last_ts.isna()] = sales_index(data.sales, last_ts[~last_ts.isna()]).to_numpy()
    with np.errstate(all="ignore"):
        feats["last_sale_market_adjusted_log_premium"] = np.log(
            joined["last_price"].to_numpy(dtype=float) * index[at.ravel()] / index_then
            / floor_before(data.market, q["ts"]))

    feats.index = queries.index
    feats["floor"] = floor_before(data.market, q["ts"])
    feats["last_price"] = joined["last_price"].to_numpy()
    feats["last_sale_at"] = joined["last_ts"].to_numpy()
    return feats


def comparable_sale_rows(data: MarketData, group_of_item: pd.Series, group: str, t: pd.Timestamp,
                         window: CompsWindow) -> pd.DataFrame:
    """The sales comparable_premiums() takes for a query of `group` at t, oldest first, with their
    event_id, item_key, ts, price and excess_premium (what a person checks a valuation against)."""
    context = data.context()
    in_group = (group_of_item.reindex(context["item_key"]).to_numpy() == group)
    times = context["ts"].to_numpy()
    recent = (times < np.datetime64(t)) & (times >= np.datetime64(t - window.max_age))
    picked = np.flatnonzero(in_group & recent)[-window.k:]
    rows = context.iloc[picked][["ts", "item_key", "price", "excess_premium"]].copy()
    rows.insert(0, "event_id", data.sales["event_id"].to_numpy()[picked])
    return rows.reset_index(drop=True)


# Columns of build_features() that describe the query rather than feed the estimator.
CONTEXT_COLUMNS = ("floor", "last_price", "last_sale_at")


def model_columns(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if c not in CONTEXT_COLUMNS]
