"""The feature builder gives exactly the features of the straightforward builder it replaced.

The reference below is the builder as it was before issue #6 (one (queries x k) window per
query, a rolling window over all sales per trailing quantile), kept here verbatim so that
any later speed-up is checked against it: same columns, same values, NaN in the same places,
for training (every sale's own time), the tuning harness (daily midnights), a replay tick and
a nowcast (one time for every item).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features import (  # noqa: I001 - what the reference uses
    COMPS_TRAIT,
    COMPS_TYPE,
    COMPS_TYPE_COUNT,
    ITEM_TYPES,
    PREMIUM_WINDOW,
    CompsWindow,
    MarketData,
    TraitVocabulary,
    build_features,
    eth_usd_before,
    floor_before,
    trait_adjusted_market_premiums,
)
from models.hedonic import hedonic_premiums, item_design
from models.market_index import INDEX_MIN_SALES, INDEX_QUANTILE, INDEX_WINDOWS_DAYS, robust_floor

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "cryptopunks"


# --- the reference: the builder before issue #6, verbatim ----------------------------------------

# TraitVocabulary's methods as they were, as functions of the vocabulary.
def rarest_trait(self: TraitVocabulary, items: pd.DataFrame, rank: int = 0) -> pd.Series:
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


def item_features(self: TraitVocabulary, items: pd.DataFrame) -> pd.DataFrame:
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
    # Added with the twelfth round (docs/model.md): each attribute level but the commonest, 0/1.
    for name, levels in self.attribute_levels.items():
        for level in levels:
            extra[f"{name}:{level}"] = (items[name] == level).astype(np.float64).to_numpy()
    return pd.concat([out, pd.DataFrame(extra, index=items.index)], axis=1)



def sales_index(sales: pd.DataFrame, days: pd.DatetimeIndex) -> pd.Series:
    """Level at the start of each day in `days`, from sales strictly before that day."""
    times = sales["ts"].to_numpy()
    prices = sales["price"].to_numpy(dtype=float)
    starts = days.normalize().to_numpy()
    level = np.full(len(starts), np.nan)
    for window in INDEX_WINDOWS_DAYS:
        quantile, count = trailing_quantiles(times, prices, starts, pd.Timedelta(days=window), (INDEX_QUANTILE,))
        todo = np.isnan(level) & (count >= INDEX_MIN_SALES)
        level[todo] = quantile[todo, 0]
    return pd.Series(level, index=days, name="sales_index")


def trailing_quantiles(
    times: np.ndarray, values: np.ndarray, query_times: np.ndarray, window: pd.Timedelta,
    quantiles: tuple[float, ...] = (0.5,),
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of `values` over [t - window, t) for each query time t, and the count.
    `times` must be sorted. Returns (array of shape (n_queries, n_quantiles), counts).

    Query points are merged into the series as NaN and pandas' rolling window (closed on the
    left, so nothing at t itself is seen) does the work in C."""
    values = np.where(np.isfinite(values), values, np.nan)
    n_obs = len(times)
    merged_times = np.concatenate([times, query_times])
    merged_values = np.concatenate([values, np.full(len(query_times), np.nan)])
    order = np.argsort(merged_times, kind="stable")
    series = pd.Series(merged_values[order], index=pd.DatetimeIndex(merged_times[order]))
    rolling = series.rolling(window, closed="left", min_periods=1)
    is_query = order >= n_obs
    position = np.empty(len(query_times), dtype=int)
    position[order[is_query] - n_obs] = np.flatnonzero(is_query)
    out = np.column_stack([rolling.quantile(q).to_numpy()[position] for q in quantiles])
    counts = rolling.count().to_numpy()[position]
    return out, np.nan_to_num(counts)


# sale_context and market_features read as models/features.py's do; they are here so that they
# call the reference trailing_quantiles above, not the new one.
def sale_context(data: MarketData) -> pd.DataFrame:
    """Per sale: its log premium over the floor known before it, the market's median premium
    over the week before it, and the difference (how far this item sold above the market)."""
    sales = data.sales
    times = sales["ts"].to_numpy()
    floor = floor_before(robust_floor(data.market, sales), sales["ts"])
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
    # Volatility of the daily floor over the last 30 days known before t. Changed with the
    # seventeenth round (docs/model.md): each change per square root of the days it spans, over
    # 30 calendar days (it was each change between observed days, over 30 of them).
    floors = data.market.dropna(subset=["floor"])
    daily = (pd.Series(np.log(floors["floor"].to_numpy(dtype=float)), index=floors["day"]).diff()
             / np.sqrt(floors["day"].diff().dt.days.to_numpy()))
    vol = daily.rolling("30D", min_periods=5).std()
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
    member = item_features(vocab, items)[[f"trait:{t}" for t in vocab.traits]] > 0
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


def reference_build_features(data: MarketData, vocab: TraitVocabulary, queries: pd.DataFrame) -> pd.DataFrame:
    """Features for each (item_key, ts) in `queries`, from data strictly before ts.

    Returns a frame aligned with `queries` (same index) including `floor`, the floor the
    target and the prediction are relative to.
    """
    q = queries[["item_key", "ts"]].copy()
    q["ts"] = pd.to_datetime(q["ts"]).astype("datetime64[ns]")
    q["_order"] = np.arange(len(q))
    query_times = q["ts"].to_numpy()
    items = data.items.loc[q["item_key"]]
    feats = item_features(vocab, items).reset_index(drop=True)

    context = sale_context(data)  # the reference's own, not the cached one
    data = MarketData(data.items, data.sales, robust_floor(data.market, data.sales), context)
    # Market features depend on the time only: compute them once per distinct time (a nowcast
    # asks for one time for every item) and spread them over the queries.
    times, at = np.unique(query_times, return_inverse=True)
    market = market_features(data, context, times)
    index = sales_index(data.sales, pd.DatetimeIndex(times)).to_numpy()
    market["log_index_over_floor"] = np.log(index / floor_before(data.market, pd.Series(times)))
    # Added after the speed-ups this reference checks (as hedonic_excess_premium below).
    design = item_design(data.items, vocab)
    for name, values in trait_adjusted_market_premiums(
            context, design, data.items.index.get_indexer(context["item_key"]), times).items():
        market[name] = values
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
    rarest = rarest_trait(vocab, data.items)
    sale_rarest = rarest.reindex(context["item_key"]).fillna("").to_numpy(dtype=object)
    query_rarest = rarest.reindex(q["item_key"]).fillna("").to_numpy(dtype=object)
    feats["comps_trait_excess_premium"], feats["comps_trait_count"] = comparable_premiums(
        context, sale_rarest, query_rarest, query_times, COMPS_TRAIT)
    sale_type = data.items["item_type"].reindex(context["item_key"]).fillna("").to_numpy(dtype=object)
    query_type = items["item_type"].fillna("").to_numpy(dtype=object)
    feats["comps_type_excess_premium"], feats["comps_type_count"] = comparable_premiums(
        context, sale_type, query_type, query_times, COMPS_TYPE)

    # ... of its second-rarest trait, of its type with the same accessory count, and over all its traits.
    second = rarest_trait(vocab, data.items, rank=1)
    feats["comps_trait2_excess_premium"], feats["comps_trait2_count"] = comparable_premiums(
        context, second.reindex(context["item_key"]).fillna("").to_numpy(dtype=object),
        second.reindex(q["item_key"]).fillna("").to_numpy(dtype=object), query_times, COMPS_TRAIT)
    type_count = data.items["item_type"].astype(str) + "|" + data.items["accessory_count"].astype(str)
    feats["comps_type_count_excess_premium"], feats["comps_type_count_count"] = comparable_premiums(
        context, type_count.reindex(context["item_key"]).fillna("").to_numpy(dtype=object),
        type_count.reindex(q["item_key"]).fillna("").to_numpy(dtype=object), query_times, COMPS_TYPE_COUNT)
    feats["comps_traits_mean_excess_premium"], feats["comps_traits_max_excess_premium"] = all_trait_comps(
        context, data.items, vocab, q["item_key"].to_numpy(), query_times)
    # Added after the speed-ups this reference checks, so it has no older form: computed here as
    # the builder computes it, to keep the columns and their order the same.
    feats["hedonic_excess_premium"] = hedonic_premiums(
        context, design, data.items.index.get_indexer(context["item_key"]),
        data.items.index.get_indexer(q["item_key"]), query_times)

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




# --- the comparison --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled() -> MarketData:
    from storage.bundled import market_data_from_files

    return market_data_from_files(BUNDLED / "punks.csv", [BUNDLED / "sales.csv"], [BUNDLED / "floor.csv"],
                                  [BUNDLED / "eth_usd.csv"], min_floor_fraction=0.2)


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns in the same order, same index, NaN in the same places, and the same values
    to the bit (the models are trained on them: tune.py must print the same figures)."""
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_index_equal(actual.index, expected.index)
    for column in expected.columns:
        got, want = actual[column].to_numpy(), expected[column].to_numpy()
        assert got.dtype == want.dtype, column
        np.testing.assert_array_equal(pd.isna(got), pd.isna(want), err_msg=f"NaN mask of {column}")
        np.testing.assert_array_equal(got, want, err_msg=column)  # NaN == NaN for assert_array_equal


def check(data: MarketData, queries: pd.DataFrame) -> pd.DataFrame:
    vocab = TraitVocabulary(data.items)
    expected = reference_build_features(data, vocab, queries)
    actual = build_features(data, vocab, queries)
    assert_same_features(actual, expected)
    return actual


def test_training_queries_every_sale_at_its_own_time(bundled):
    """Training: one query per sale, at the sale's time (thousands of distinct times, some shared)."""
    queries = bundled.sales[["item_key", "ts"]].reset_index(drop=True)
    feats = check(bundled, queries)
    assert feats["comps_trait_excess_premium"].notna().mean() > 0.5  # the comparison is not vacuous


def test_tuning_queries_at_daily_midnights(bundled):
    """bench/tune.py: the sales of a quarter valued at the midnight before each (few times, many items)."""
    sales = bundled.sales[(bundled.sales["ts"] > "2021-07-01") & (bundled.sales["ts"] <= "2021-10-01")]
    queries = pd.DataFrame({"item_key": sales["item_key"].to_numpy(),
                            "ts": (sales["ts"] - pd.Timedelta(1, "ns")).dt.normalize().to_numpy()},
                           index=sales.index[::-1][: len(sales)])  # an index that is not 0..n-1
    check(bundled.before(pd.Timestamp("2021-10-01")), queries)


@pytest.mark.parametrize("as_of", ["2021-09-15 13:45", "2018-01-20", "2017-06-24 12:00"])
def test_nowcast_every_item_at_one_time(bundled, as_of):
    """A nowcast or a replay tick: every item at one time, from the market known before it (the
    last one early in the data, when most groups have no comparable sales yet)."""
    t = pd.Timestamp(as_of)
    queries = pd.DataFrame({"item_key": bundled.items.index, "ts": t})
    check(bundled.before(t), queries)
    check(bundled, queries)  # the full market: what is after t must not matter, nor change the path


def test_mixed_times_and_repeated_items(bundled):
    """A few items at many times and many items at a few, shuffled, with duplicates."""
    rng = np.random.default_rng(6)
    keys = rng.choice(bundled.items.index.to_numpy(), 3000)
    times = rng.choice(pd.date_range("2017-06-23", "2021-12-31", periods=40).to_numpy(), 3000)
    times[:500] = bundled.sales["ts"].to_numpy()[rng.integers(0, len(bundled.sales), 500)]  # exactly at sales
    check(bundled, pd.DataFrame({"item_key": keys, "ts": times}))


def test_windows_read_directly_match_pandas_rolling_window_to_the_bit():
    """trailing_quantiles' two paths (windows read directly, one rolling window over all sales)."""
    from models.market_index import quantiles_of_windows, rolling_quantiles

    rng = np.random.default_rng(3)
    times = np.sort(np.datetime64("2021-01-01") + rng.integers(0, 40 * 86400, 5000).astype("timedelta64[s]"))
    times = times.astype("datetime64[ns]")
    values = rng.normal(0, 1, len(times)).round(rng.integers(0, 4))  # ties, too
    queries = np.unique(np.concatenate([times[::7], times[:300] + np.timedelta64(13, "h")]))  # some at sales
    window = pd.Timedelta(days=3)
    lo = np.searchsorted(times, queries - np.timedelta64(window), "left")
    hi = np.searchsorted(times, queries, "left")
    quantiles = (0.2, 0.25, 0.5, 0.8)
    direct, direct_counts = quantiles_of_windows(values, lo, hi, quantiles)
    rolled, rolled_counts = rolling_quantiles(times, values, queries, window, quantiles)
    np.testing.assert_array_equal(direct_counts, rolled_counts)
    np.testing.assert_array_equal(direct, rolled)
    assert (direct_counts == 0).any() and (direct_counts > 50).any()


def test_row_medians_are_numpys_nanmedian_to_the_bit():
    from models.features import row_medians

    rng = np.random.default_rng(11)
    rows = rng.normal(0, 1, (20000, 30)).round(rng.integers(0, 5))  # ties, too
    rows[rng.random(rows.shape) < 0.4] = np.nan
    rows[:50, :] = np.nan
    rows[:50, 0] = rng.normal(0, 1, 50)  # one value
    rows[50:60, 3] = np.inf
    rows[60:70, 4] = -np.inf
    np.testing.assert_array_equal(row_medians(rows), np.nanmedian(rows, axis=1))
