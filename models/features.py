"""One feature builder for training, nowcast and replay (no train/serve skew).

Every feature of an item at time t is computed from data strictly before t: sales with
ts < t, and daily market inputs of days before t's day (a day's floor is known only once
the day is over). The target is log(price / floor), so the model learns a premium over the
market rather than the raw floor, which breaks trees when the floor moves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from models.hedonic import hedonic_premiums, item_design
from models.listings import ListingBook
from models.market_index import robust_floor, sales_index, trailing_quantiles

PREMIUM_WINDOW = pd.Timedelta(days=7)
ITEM_TYPES = ("Alien", "Ape", "Zombie", "Human")
# An item's categorical attributes besides its type and accessories, read from its stored
# attributes (empty where it has none: a zombie has no skin tone). Each level but the commonest
# is a feature and a hedonic indicator (docs/model.md, twelfth round: female punks sold at their
# own premium, which no accessory told the model).
ITEM_ATTRIBUTES = ("gender", "skin_tone")


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

    # index item_key (str); columns item_type, accessory_count, accessories (list) and, where the
    # loader has them, the ITEM_ATTRIBUTES (str, empty for none)
    items: pd.DataFrame
    # columns event_id, ts, item_key, price and, from the database and file loaders,
    # hour_precision (the sale's time_precision is models.times.HOUR); sorted by ts
    sales: pd.DataFrame
    market: pd.DataFrame  # columns day (midnight), floor, eth_usd; sorted by day
    # The sales the model never sees, and why (columns event_id, ts, item_key, price, reason):
    # suspected wash trades, and rows refused at ingest. Read by reports only; None when the
    # loader was not asked for them.
    excluded: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    # The rows refused at ingest with no time a window can hold (none readable, a line that could
    # not be read, or past what pandas holds), by reason: a report names them apart, as no window's.
    # None when the loader does not count them (the database keeps no such count).
    refused_unplaced: dict[str, int] | None = field(default=None, repr=False, compare=False)
    # The listings (models.listings.ListingBook), read by the nowcast's signals only, never by a
    # feature; None when the loader was not asked for them (training, the bundled data). A replay
    # given listings holds their whole history (models.listings.listing_history).
    listings: ListingBook | None = field(default=None, repr=False, compare=False)

    _context: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    _robust_market: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def before(self, t: pd.Timestamp) -> MarketData:
        """The market as it was known just before t. A sale known only to the hour
        (`hour_precision`) may have come at any time in it, so it is known once its hour is over:
        a replay's half-hour tick must not read a sale recorded at :10 that may have come at :45."""
        known = self.sales["ts"] < t
        if "hour_precision" in self.sales:  # its hour is over by t when it began before t's hour
            known &= ~self.sales["hour_precision"].to_numpy(dtype=bool) | (self.sales["ts"] < t.floor("h"))
        days = (self.market["day"] < t.normalize()).to_numpy()
        # Each sale's context uses only data before that sale, so the context of the market known
        # at t is a slice of the full one: no need to compute it again. Unless a sale known at t
        # came after one the hour rule hides (a second-precision sale at :20 after one recorded at
        # :10 known only to the hour): its context read the hidden one, so it is computed again.
        context = None if self._context is None else self._context[known.to_numpy()]
        times = self.sales["ts"].to_numpy()
        hidden = (times < np.datetime64(t)) & ~known.to_numpy()
        if context is not None and hidden.any() and (times[known.to_numpy()] > times[hidden].min()).any():
            context = None
        return MarketData(
            self.items,
            self.sales[known],
            self.market[days],
            _context=context,
            # So is the robust floor: a day's uses the floors and sales up to its end, all known
            # at t for the days before t's (a replay's every tick had computed it again).
            _robust_market=None if self._robust_market is None else self._robust_market[days],
            # The listings are kept whole: open_asks reads only the events and sales before its moment.
            listings=self.listings,
        )

    def known_at(self, t: pd.Timestamp) -> MarketData:
        """The market as known just before t: `before(t)` when a sale known only to the hour is in
        t's hour, not over yet (which build_features, reading every sale before t, would see), else
        this market itself, uncopied. A nowcast and an explanation value through it, so a nowcast
        asked for :30 values as the replay's tick at :30 does, whatever sales the database holds."""
        if "hour_precision" not in self.sales:
            return self
        ts = self.sales["ts"].to_numpy()
        hourly = self.sales["hour_precision"].to_numpy(dtype=bool)
        hidden = hourly & (ts >= np.datetime64(t.floor("h"))) & (ts < np.datetime64(t))
        return self.before(t) if hidden.any() else self

    def robust_market(self) -> pd.DataFrame:
        """`market` with the robust floor (market_index.robust_floor, given the sales), computed
        once per MarketData: the sales' context and the features both read it (build_features
        for 1M synthetic items at one time, 1.7M sales: 15.8 s -> 15.3 s)."""
        if self._robust_market is None:
            self._robust_market = robust_floor(self.market, self.sales)
        return self._robust_market

    def context(self) -> pd.DataFrame:
        """Per-sale context (see sale_context), computed once per MarketData."""
        if self._context is None:
            self._context = sale_context(self)
        return self._context


EXCLUDED_COLUMNS = ["event_id", "ts", "item_key", "price", "reason"]


def excluded_frame(rows) -> pd.DataFrame:
    """MarketData.excluded from (event_id, ts, item_key, price, reason[, hour_precision])
    tuples; ts aware or naive UTC, price None when the row had no readable one, hour_precision
    False when not given (a replay's listing book reads it: a wash trade known only to the hour
    ends offers from its hour's end). A time pandas cannot hold (a refused row dated in the year
    9999) cannot fall in any report's window: it is left out."""
    rows = [tuple(row) if len(row) == len(EXCLUDED_COLUMNS) + 1 else (*row, False) for row in rows]
    frame = pd.DataFrame(rows, columns=[*EXCLUDED_COLUMNS, "hour_precision"])
    frame["hour_precision"] = frame["hour_precision"].astype(bool)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, errors="coerce").dt.tz_localize(None).astype("datetime64[ns]")
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    return frame[frame["ts"].notna()].sort_values("ts", kind="stable").reset_index(drop=True)


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
        self.attribute_levels = {name: attribute_levels(items[name]) for name in ITEM_ATTRIBUTES
                                 if name in items}

    def attribute_indicators(self, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """One 0/1 column per attribute level the vocabulary knows, named "gender:Female". A
        vocabulary pickled before the twelfth round has none, and its models see none.

        float64, like the feature columns framed next to them: a float32 column among float64
        ones made pandas copy the whole feature frame once more to frame it (+1 GiB of peak memory
        for a nowcast of a million items, bench/nowcast.py)."""
        return {f"{name}:{level}": (items[name] == level).to_numpy(dtype=np.float64) if name in items
                else np.zeros(len(items))
                for name, levels in getattr(self, "attribute_levels", {}).items() for level in levels}

    def _pairs(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(row, trait column) for every known trait of every item, vectorised: a Python loop
        over items cost ~17 s per million items. The methods below take them as `pairs` when the
        caller already has them for the same `items` (build_features asks for them four times)."""
        exploded = items["accessories"].explode()
        codes = pd.Categorical(exploded.to_numpy(), categories=self.traits).codes
        rows = np.repeat(np.arange(len(items)), items["accessories"].str.len().fillna(0).to_numpy(dtype=int)
                         .clip(min=1))
        known = codes >= 0
        return rows[known], codes[known].astype(np.int64)

    def rarest_trait(self, items: pd.DataFrame, rank: int = 0) -> pd.Series:
        """Each item's rarest known trait (rank 1: the second rarest; "" when it has none); ties
        go to the first name."""
        (column,) = self.trait_columns_by_rarity(items, (rank,))
        names = np.append(np.asarray(self.traits, dtype=object), "")  # column -1: no such trait
        return pd.Series(names[column], index=items.index, dtype=object, name="accessories")

    def trait_columns_by_rarity(self, items: pd.DataFrame, ranks: tuple[int, ...],
                                pairs: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
        """For each rank, each item's trait column of that rarity (0: its rarest trait), -1 when
        it has fewer traits; ties go to the first name. One sort serves every rank."""
        rows, cols = self._pairs(items) if pairs is None else pairs
        freq = np.array([self.frequency[t] for t in self.traits])
        # traits are sorted by name, so ordering by (row, frequency, column) breaks ties by name.
        order = np.lexsort((cols, freq[cols], rows))
        rows, cols = rows[order], cols[order]
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = rows[1:] != rows[:-1]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(rows)), 0))
        rank_in_item = np.arange(len(rows)) - group_start
        out = []
        for rank in ranks:
            column = np.full(len(items), -1, dtype=np.int64)
            picked = rank_in_item == rank
            column[rows[picked]] = cols[picked]
            out.append(column)
        return out

    def membership(self, items: pd.DataFrame, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(items + 1) x traits, True where the item has the trait; the last row, for an item
        not in `items` (position -1), has none. Column-major: callers read one trait at a time."""
        rows, cols = self._pairs(items) if pairs is None else pairs
        member = np.zeros((len(items) + 1, len(self.traits)), dtype=bool, order="F")
        member[rows, cols] = True
        return member

    def item_feature_columns(self, items: pd.DataFrame,
                             pairs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Each item's traits and type one-hot, their rarity, its accessory count and its attribute
        levels (attribute_indicators), by column."""
        rows, cols = self._pairs(items) if pairs is None else pairs
        freq = np.array([self.frequency[t] for t in self.traits])
        onehot = np.zeros((len(items), len(self.traits)), dtype=np.float32, order="F")  # each column contiguous
        onehot[rows, cols] = 1.0
        min_freq = np.ones(len(items))
        np.minimum.at(min_freq, rows, freq[cols])
        log_freq_sum = np.bincount(rows, weights=np.log(freq[cols]), minlength=len(items)) if len(rows) else \
            np.zeros(len(items))
        out = {f"trait:{t}": onehot[:, j] for j, t in enumerate(self.traits)}
        out.update({f"type:{kind}": (items["item_type"] == kind).astype(np.float32).to_numpy() for kind in ITEM_TYPES})
        out["type_log_frequency"] = np.log(items["item_type"].map(self.type_frequency).fillna(1e-4)).to_numpy()
        out["accessory_count"] = items["accessory_count"].astype(float).to_numpy()
        out["rarest_trait_log_frequency"] = np.log(min_freq)
        out["trait_log_frequency_sum"] = log_freq_sum
        out.update(self.attribute_indicators(items))
        return out


def attribute_text(value: Any) -> str:
    """An item attribute as a level: its text, or "" (none) for anything else. A number or a list
    stored by another source is no level, so every loader reads the same (the database's `->>`
    and Python's str() spell `true` and `1.50` differently)."""
    return value if isinstance(value, str) else ""


def attribute_levels(values: pd.Series) -> list[str]:
    """An attribute's levels but its commonest (the one every indicator is read against) and the
    empty one, commonest first; ties by name."""
    counts = values[values.fillna("").astype(str) != ""].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [str(level) for level, _ in ranked[1:]]


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
    floor = floor_before(data.robust_market(), sales["ts"])
    log_premium = np.log(sales["price"].to_numpy(dtype=float) / floor)
    market, _ = trailing_quantiles(times, log_premium, times, PREMIUM_WINDOW)
    return pd.DataFrame(
        {"ts": times, "item_key": sales["item_key"].to_numpy(), "price": sales["price"].to_numpy(dtype=float),
         "log_premium": log_premium, "excess_premium": log_premium - market[:, 0]}
    )


def valuation_moments(sales: pd.DataFrame) -> pd.Series:
    """The moment each sale is valued at when it is a training row (or a drift sample): its own
    time, or the start of its hour where only the hour is known (`hour_precision`). A
    sale of the same hour may have come after it, so its features must not hold one."""
    moments = sales["ts"]
    if "hour_precision" in sales:
        moments = moments.where(~sales["hour_precision"].to_numpy(dtype=bool), moments.dt.floor("h"))
    return moments


def valuation_queries(sales: pd.DataFrame) -> pd.DataFrame:
    """build_features' queries for `sales` valued at their valuation moments, indexed 0..n-1."""
    return pd.DataFrame({"item_key": sales["item_key"].to_numpy(), "ts": valuation_moments(sales).to_numpy()})


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
    # Volatility of the daily floor over the 30 days known before t: each change between two
    # observed days divided by the square root of the days between them (a random walk's daily
    # scale; 2017-2020 have gaps of up to 10 days, which a plain difference counts as one day).
    floors = data.market.dropna(subset=["floor"])
    gap_days = floors["day"].diff().dt.days.to_numpy(dtype=float)
    daily = pd.Series(np.diff(np.log(floors["floor"].to_numpy(dtype=float)), prepend=np.nan) / np.sqrt(gap_days),
                      index=pd.DatetimeIndex(floors["day"]))
    vol = daily.rolling("30D", min_periods=5).std()
    idx = np.searchsorted(vol.index.to_numpy(), pd.DatetimeIndex(query_times).normalize().to_numpy()) - 1
    known = np.append(vol.to_numpy(), np.nan)  # position -1 (no floor day before t, or none at all) reads NaN
    out["floor_volatility_30d"] = known[np.where(idx >= 0, idx, -1)]
    eth = eth_usd_before(data.market, ts)
    out["log_eth_usd"] = np.log(eth)
    out["log_eth_usd_change_7d"] = np.log(eth / eth_usd_before(data.market, ts - pd.Timedelta(days=7)))
    return pd.DataFrame(out)


TRAIT_ADJUSTED_WINDOWS_DAYS = (1, 3, 7)


def trait_adjusted_market_premiums(context: pd.DataFrame, design: sparse.csr_matrix, item_of_sale: np.ndarray,
                                   query_times: np.ndarray, hedonic_fits: dict | None = None) -> dict[str, np.ndarray]:
    """The median premium over the floor of the sales of the last 1, 3 and 7 days, each net of
    what its item's traits are worth (the hedonic model of its month): a day of rare sales does
    not read as a rising market, as it does in the raw median. Only the sales those windows can
    reach are valued. Walk-forward (bench/tune.py) took 0.9 points of MAPE off Q2 2021 and 0.1
    off Q3, and the Q2 bias from -5 % to -1.5 %."""
    if not len(query_times):
        return {f"market_trait_adjusted_premium_{days}d": np.empty(0) for days in TRAIT_ADJUSTED_WINDOWS_DAYS}
    times = context["ts"].to_numpy()
    reach = np.timedelta64(pd.Timedelta(days=max(TRAIT_ADJUSTED_WINDOWS_DAYS)))
    lo, hi = np.searchsorted(times, [query_times.min() - reach, query_times.max()], "left")
    recent = np.arange(lo, hi)
    net = context["log_premium"].to_numpy()[recent] - hedonic_premiums(
        context, design, item_of_sale, item_of_sale[recent], times[recent], hedonic_fits)
    out = {}
    for days in TRAIT_ADJUSTED_WINDOWS_DAYS:
        medians, _ = trailing_quantiles(times[recent], net, query_times, pd.Timedelta(days=days))
        out[f"market_trait_adjusted_premium_{days}d"] = medians[:, 0]
    return out


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
    medians[ok] = row_medians(window[ok])
    return medians, found


def row_medians(rows: np.ndarray) -> np.ndarray:
    """np.nanmedian(rows, axis=1) for rows holding at least one value, to the bit: the middle
    of each sorted row, or (low + high) / 2 of the two middles as numpy computes it. nanmedian's
    masked arrays cost ~0.3 ms a call, most of a nowcast's comparables (one small call per group)."""
    ordered = np.sort(rows, axis=1)  # NaN last
    n = (~np.isnan(rows)).sum(axis=1)
    at = np.arange(len(rows))
    with np.errstate(invalid="ignore"):  # -inf and inf in the middle give NaN, as with numpy
        return (ordered[at, (n - 1) // 2] + ordered[at, n // 2]) / 2


def distinct_pairs(groups: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (group, time) pairs, sorted by group then time, and the pair of each input."""
    order = np.lexsort((times, groups))
    groups, times = groups[order], times[order]
    new = np.ones(len(groups), dtype=bool)
    new[1:] = (groups[1:] != groups[:-1]) | (times[1:] != times[:-1])
    pair_of = np.empty(len(order), dtype=np.int64)
    pair_of[order] = np.cumsum(new) - 1
    return groups[new], times[new], pair_of


def comparable_premiums(
    times: np.ndarray, excess: np.ndarray, sale_group: np.ndarray, query_group: np.ndarray,
    query_times: np.ndarray, window: CompsWindow = COMPS_TRAIT,
) -> tuple[np.ndarray, np.ndarray]:
    """Median excess premium of the last k sales before t (within max_age) in the query's group
    (e.g. items sharing its rarest trait), and how many were found. Groups are integer codes of
    each sale (times sorted) and each query; -1 is no group (NaN, 0 found).

    Every query of a group at the same time has the same comparables, so each distinct
    (group, time) is computed once and spread over its queries: a nowcast, one time for every
    item, reads one window per group instead of one per item."""
    medians = np.full(len(query_group), np.nan)
    counts = np.zeros(len(query_group))
    asked = np.flatnonzero(query_group >= 0)
    pair_groups, pair_times, pair_of = distinct_pairs(query_group[asked], query_times[asked])
    pair_medians, pair_counts = np.full(len(pair_groups), np.nan), np.zeros(len(pair_groups))
    by_group = np.argsort(sale_group, kind="stable")  # stable: each group's sales stay in time order
    sorted_groups = sale_group[by_group]
    for group in np.unique(pair_groups):
        members = by_group[np.searchsorted(sorted_groups, group, "left"):np.searchsorted(sorted_groups, group, "right")]
        if not len(members):
            continue
        pairs = slice(np.searchsorted(pair_groups, group, "left"), np.searchsorted(pair_groups, group, "right"))
        pair_medians[pairs], pair_counts[pairs] = window_medians(times[members], excess[members], pair_times[pairs],
                                                                 window.k, window.max_age)
    medians[asked], counts[asked] = pair_medians[pair_of], pair_counts[pair_of]
    return medians, counts


def all_trait_comps(context: pd.DataFrame, items: pd.DataFrame, vocab: TraitVocabulary, query_keys: np.ndarray,
                    query_times: np.ndarray, window: CompsWindow = COMPS_TRAIT) -> tuple[np.ndarray, np.ndarray]:
    """Over every trait of each query item, the median excess premium of the last k sales
    (within max_age) of items with that trait: their mean and max over the item's traits (NaN
    when no trait has comps). The rarest trait alone misses what the others add."""
    return trait_comps(context["ts"].to_numpy(), context["excess_premium"].to_numpy(), vocab.membership(items),
                       items.index.get_indexer(context["item_key"]), items.index.get_indexer(query_keys),
                       query_times, window)


def trait_comps(times: np.ndarray, excess: np.ndarray, member: np.ndarray, item_of_sale: np.ndarray,
                item_of_query: np.ndarray, query_times: np.ndarray,
                window: CompsWindow) -> tuple[np.ndarray, np.ndarray]:
    """all_trait_comps from positions: `member` is vocab.membership(items), item_of_* are positions
    in those items (-1: unknown item, no traits)."""
    distinct_times, time_of_query = np.unique(query_times, return_inverse=True)
    time_of_query = time_of_query.ravel()
    # A column per trait of the item with the most traits, and at least 8 (the width this had when
    # punks, with at most 7 accessories, were the only market: nanmean's summation, and so the last
    # bit of the feature, depends on it).
    width = max(8, int(member[item_of_query].sum(axis=1).max(initial=0)))
    stack = np.full((len(item_of_query), width), np.nan)
    filled = np.zeros(len(item_of_query), dtype=int)
    for j in range(member.shape[1]):
        sale_in = member[item_of_sale, j]
        query_in = np.flatnonzero(member[item_of_query, j])
        if not sale_in.any() or not len(query_in):
            continue
        # One window per distinct time asked for this trait (a nowcast: one), spread over its queries.
        asked, time_of = np.unique(time_of_query[query_in], return_inverse=True)
        med, _ = window_medians(times[sale_in], excess[sale_in], distinct_times[asked], window.k, window.max_age)
        stack[query_in, filled[query_in]] = med[time_of.ravel()]
        filled[query_in] += 1
    some = np.isfinite(stack).any(axis=1)
    means, highs = np.full(len(item_of_query), np.nan), np.full(len(item_of_query), np.nan)
    means[some] = np.nanmean(stack[some], axis=1)
    highs[some] = np.nanmax(stack[some], axis=1)
    return means, highs


def item_positions(items: pd.DataFrame, keys: pd.Series) -> np.ndarray:
    """Position of each key in `items`; a key that is not there is an error, as with .loc."""
    positions = items.index.get_indexer(keys)
    if (positions < 0).any():
        raise KeyError(f"not among the items: {list(keys[positions < 0][:5])}")
    return positions


def group_codes(labels: pd.Series) -> np.ndarray:
    """An integer code for each label; -1 (no group) for NaN and "". Integers sort and compare
    much faster than the labels (a million object strings took seconds to sort)."""
    codes, _ = pd.factorize(labels)  # NaN: -1
    codes[(labels == "").to_numpy()] = -1
    return codes


def comparable_features(items: pd.DataFrame, vocab: TraitVocabulary, context: pd.DataFrame, item_of_sale: np.ndarray,
                        item_of_query: np.ndarray, query_times: np.ndarray,
                        pairs: tuple[np.ndarray, np.ndarray] | None = None,
                        member: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Comparable sales: recent sales of items that share the query item's rarest trait, its
    second rarest, its type, its type and accessory count, and each of its traits. item_of_* are
    positions in `items` (-1: a sale of an item not listed); `pairs` and `member` are
    vocab._pairs(items) and vocab.membership(items) when the caller has them."""
    pairs = vocab._pairs(items) if pairs is None else pairs
    member = vocab.membership(items, pairs) if member is None else member
    times, excess = context["ts"].to_numpy(), context["excess_premium"].to_numpy()

    def comps(group_of_item: np.ndarray, window: CompsWindow) -> tuple[np.ndarray, np.ndarray]:
        # The appended -1 (no group) is what position -1, an item not listed, reads.
        sale_group = np.append(group_of_item, -1)[item_of_sale]
        return comparable_premiums(times, excess, sale_group, group_of_item[item_of_query], query_times, window)

    rarest, second = vocab.trait_columns_by_rarity(items, (0, 1), pairs)
    type_and_count = items.groupby(["item_type", "accessory_count"], dropna=False, sort=False).ngroup().to_numpy()
    out = {}
    out["comps_trait_excess_premium"], out["comps_trait_count"] = comps(rarest, COMPS_TRAIT)
    out["comps_type_excess_premium"], out["comps_type_count"] = comps(group_codes(items["item_type"]), COMPS_TYPE)
    out["comps_trait2_excess_premium"], out["comps_trait2_count"] = comps(second, COMPS_TRAIT)
    out["comps_type_count_excess_premium"], out["comps_type_count_count"] = comps(type_and_count, COMPS_TYPE_COUNT)
    out["comps_traits_mean_excess_premium"], out["comps_traits_max_excess_premium"] = trait_comps(
        times, excess, member, item_of_sale, item_of_query, query_times, COMPS_TRAIT)
    return out


def naive_times(ts: pd.Series) -> np.ndarray:
    """Query times as naive datetime64[ns]. A column that already is one is copied as it is:
    pd.to_datetime of it gave the same values in 17 ms per 10,000 rows."""
    if ts.dtype == np.dtype("datetime64[ns]"):
        return ts.to_numpy(copy=True)
    return pd.to_datetime(ts).astype("datetime64[ns]").to_numpy()


def build_features(data: MarketData, vocab: TraitVocabulary, queries: pd.DataFrame) -> pd.DataFrame:
    """Features for each (item_key, ts) in `queries`, from data strictly before ts.

    Returns a frame aligned with `queries` (same index) including `floor`, the floor the
    target and the prediction are relative to. Columns are gathered first and framed once:
    adding them to a frame one by one copied a million rows several times.
    """
    query_times = naive_times(queries["ts"])
    item_of_query = item_positions(data.items, queries["item_key"])
    context = data.context()
    # Items by position, not key: integers join and group several times faster than strings.
    item_of_sale = data.items.index.get_indexer(context["item_key"])  # -1: a sale of an item not listed
    robust = data.robust_market()
    data = MarketData(data.items, data.sales, robust, _context=context, _robust_market=robust)
    # The items' traits, read once for the four uses below. A nowcast asks for every item in
    # order, so its query rows are the items' rows and share them too.
    pairs = vocab._pairs(data.items)
    member = vocab.membership(data.items, pairs)
    every_item_in_order = len(item_of_query) == len(data.items) and (item_of_query == np.arange(len(data.items))).all()
    columns = vocab.item_feature_columns(data.items.iloc[item_of_query], pairs if every_item_in_order else None)

    # Market features depend on the time only: compute them once per distinct time (a nowcast
    # asks for one time for every item) and spread them over the queries.
    times, at = np.unique(query_times, return_inverse=True)
    at = at.ravel()
    market = market_features(data, context, times)
    index = sales_index(data.sales, pd.DatetimeIndex(times)).to_numpy()
    market["log_index_over_floor"] = np.log(index / floor_before(data.market, pd.Series(times)))
    design, hedonic_fits = item_design(data.items, vocab, member), {}  # the hedonic model's, for its two uses below
    for name, values in trait_adjusted_market_premiums(context, design, item_of_sale, times, hedonic_fits).items():
        market[name] = values
    columns.update({name: market[name].to_numpy()[at] for name in market.columns})

    # The item's own last sale before t, as a premium over the floor of its time.
    last = last_sales(context, item_of_sale, item_of_query, query_times)
    columns["last_sale_log_premium"] = last["last_log_premium"].to_numpy()
    columns["last_sale_excess_premium"] = last["last_excess_premium"].to_numpy()
    columns["last_sale_age_days"] = (last["ts"] - last["last_ts"]).dt.total_seconds().to_numpy() / 86400.0

    columns.update(comparable_features(data.items, vocab, context, item_of_sale, item_of_query, query_times, pairs,
                                       member))
    columns["hedonic_excess_premium"] = hedonic_premiums(context, design, item_of_sale, item_of_query, query_times,
                                                         hedonic_fits)

    floor = floor_before(data.market, query_times)
    columns["last_sale_market_adjusted_log_premium"] = carried_forward_log_premium(data.sales, last, index[at], floor)
    columns["floor"] = floor
    columns["last_price"] = last["last_price"].to_numpy()
    columns["last_sale_at"] = last["last_ts"].to_numpy()
    return pd.DataFrame(columns, index=queries.index)


def last_sales(context: pd.DataFrame, item_of_sale: np.ndarray, item_of_query: np.ndarray,
               query_times: np.ndarray) -> pd.DataFrame:
    """Each query item's own last sale strictly before the query's time (NaN and NaT when none),
    in query order: ts (the query's), last_ts, last_price, last_log_premium, last_excess_premium."""
    queries = pd.DataFrame({"item": item_of_query, "ts": query_times, "_order": np.arange(len(query_times))})
    history = context.drop(columns="item_key").assign(item=item_of_sale).rename(
        columns={"ts": "last_ts", "log_premium": "last_log_premium", "excess_premium": "last_excess_premium",
                 "price": "last_price"})
    return pd.merge_asof(
        queries.sort_values("ts", kind="stable"),
        history,
        left_on="ts",
        right_on="last_ts",
        by="item",
        allow_exact_matches=False,
        direction="backward",
    ).sort_values("_order")


def carried_forward_log_premium(sales: pd.DataFrame, last: pd.DataFrame, index_now: np.ndarray,
                                floor: np.ndarray) -> np.ndarray:
    """The item's last price carried forward by the market's move since: last price x (sales
    index now / sales index then), over the floor now."""
    last_ts = pd.DatetimeIndex(last["last_ts"].to_numpy())
    index_then = np.full(len(last), np.nan)
    if (~last_ts.isna()).any():
        index_then[~last_ts.isna()] = sales_index(sales, last_ts[~last_ts.isna()]).to_numpy()
    with np.errstate(all="ignore"):
        return np.log(last["last_price"].to_numpy(dtype=float) * index_now / index_then / floor)


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
