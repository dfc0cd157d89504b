"""The nowcast's faster paths give the values of the slower ones, to the bit: a feature, floor or
band that moved in its last bit would move a published value (bench/nowcast.py)."""

import numpy as np
import pandas as pd

from models.features import TraitVocabulary, build_features
from models.market_index import (
    DROP_TOLERANCE,
    ODD_SALE_FRACTION,
    RISE_TOLERANCE,
    SALES_LOW_DAYS,
    SALES_LOW_MIN_SALES,
    SALES_LOW_QUANTILE,
    held_floor_and_lows,
    interpolated_quantile,
    sorted_quantile,
)
from tests.unit.test_features import synthetic_market


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(np.asarray(a, dtype=float).view(np.int64),
                                                 np.asarray(b, dtype=float).view(np.int64))


def test_sorted_quantile_is_interpolated_quantile_to_the_bit():
    rng = np.random.default_rng(3)
    for n in range(1, 60):
        for _ in range(20):
            ordered = np.sort(rng.lognormal(1, 2, n))
            for q in (SALES_LOW_QUANTILE, 0.25, 0.5, 0.9, 1 / 3):
                expected = interpolated_quantile(ordered, np.array([0]), np.array([n]), q)[0]
                assert same_bits(np.array([sorted_quantile(ordered, q)]), np.array([expected]))


def held_floor_and_lows_reference(days, floor, sales):
    """held_floor_and_lows as it was written before its loop was shortened (every day filtered,
    sorted and its quantile taken by interpolated_quantile)."""
    times = sales["ts"].to_numpy()
    prices = sales["price"].to_numpy(dtype=float)
    day_before = np.searchsorted(days, times.astype("datetime64[D]"), "left") - 1
    day_ends = days.astype("datetime64[D]").astype(times.dtype) + np.timedelta64(1, "D")
    first = np.searchsorted(times, day_ends - np.timedelta64(SALES_LOW_DAYS, "D"), "left")
    last = np.searchsorted(times, day_ends, "left")
    held = floor.copy()
    lows = np.full(len(held), np.nan)
    for i in range(1, len(held)):
        window = slice(first[i], last[i])
        before = day_before[window]
        floor_then = np.where(before >= 0, np.minimum(held[before], floor[before]), np.nan)
        price = prices[window]
        kept = np.sort(price[np.isfinite(price) & ~(price < ODD_SALE_FRACTION * floor_then)])
        if len(kept) >= SALES_LOW_MIN_SALES:
            lows[i] = interpolated_quantile(kept, np.array([0]), np.array([len(kept)]), SALES_LOW_QUANTILE)[0]
        previous = held[i - 1]
        if held[i] < previous:
            unconfirmed = held[i] < DROP_TOLERANCE * lows[i]
        else:
            unconfirmed = held[i] > RISE_TOLERANCE * (lows[i] if np.isfinite(lows[i]) else previous)
        if unconfirmed:
            held[i] = previous
    return held, lows


def test_held_floor_and_lows_match_the_reference_loop_to_the_bit():
    rng = np.random.default_rng(11)
    for seed in range(8):
        days = pd.date_range("2020-01-01", periods=200, freq="D").to_numpy()
        floor = 5 * np.exp(np.cumsum(rng.normal(0, 0.08, len(days))))
        floor[rng.random(len(days)) < 0.05] *= rng.choice([0.3, 3.0])  # spikes and drops to hold
        # Busy and quiet stretches: days with fewer sales than a low needs, and odd cheap sales.
        n = int(rng.integers(50, 1500))
        ts = np.sort(days[0] + (rng.uniform(0, 200, n) * 86400e9).astype("timedelta64[ns]"))
        day = (ts - days[0]).astype("timedelta64[D]").astype(int)
        price = floor[day] * np.exp(rng.normal(0.1, 0.3, n))
        price[rng.random(n) < 0.05] *= 0.2
        price[rng.random(n) < 0.01] = np.nan
        sales = pd.DataFrame({"ts": ts, "price": price})
        held, lows = held_floor_and_lows(days, floor, sales)
        ref_held, ref_lows = held_floor_and_lows_reference(days, floor, sales)
        assert same_bits(held, ref_held) and same_bits(lows, ref_lows), seed


def test_a_nowcast_of_every_item_in_order_gets_the_features_of_the_same_queries_shuffled():
    """build_features shares the items' traits with the item columns only when the queries are
    every item in order (a nowcast); shuffled, the same queries read them apart. Same bits."""
    data = synthetic_market(n_items=80, n_sales=600, seed=4)
    vocab = TraitVocabulary(data.items)
    t = pd.Timestamp("2021-04-20 13:00")
    in_order = pd.DataFrame({"item_key": data.items.index, "ts": t})
    shuffled = in_order.sample(frac=1, random_state=2)
    shared = build_features(data, vocab, in_order)
    apart = build_features(data, vocab, shuffled).loc[in_order.index]
    pd.testing.assert_frame_equal(shared, apart, check_exact=True)
    for column in shared.columns:
        if shared[column].dtype.kind == "f":
            assert same_bits(shared[column].to_numpy(), apart[column].to_numpy()), column
    # Query times given as objects, not datetime64[ns], read the same.
    as_objects = in_order.assign(ts=pd.Series([t] * len(in_order), dtype=object, index=in_order.index))
    pd.testing.assert_frame_equal(build_features(data, vocab, as_objects), shared, check_exact=True)
