"""The feature builder sees only the past: adding later sales never changes a feature at t."""

import numpy as np
import pandas as pd
import pytest

from models.estimator import fit
from models.features import MarketData, TraitVocabulary, build_features


def synthetic_market(n_items=60, n_sales=400, seed=0) -> MarketData:
    rng = np.random.default_rng(seed)
    traits = ["Cap", "Pipe", "Hoodie", "Earring", "3D Glasses"]
    items = pd.DataFrame(
        {
            "item_key": [str(i) for i in range(n_items)],
            "item_type": rng.choice(["Human", "Zombie"], n_items, p=[0.9, 0.1]),
            "accessories": [list(rng.choice(traits, rng.integers(1, 3), replace=False)) for _ in range(n_items)],
        }
    ).set_index("item_key")
    items["accessory_count"] = items["accessories"].map(len)
    days = pd.date_range("2021-01-01", periods=120, freq="D")
    floor = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    market = pd.DataFrame({"day": days, "floor": floor, "eth_usd": 2000.0})
    ts = pd.Timestamp("2021-01-03") + pd.to_timedelta(np.sort(rng.uniform(0, 115, n_sales)), unit="D")
    keys = rng.choice(items.index, n_sales)
    premium = np.where(items.loc[keys, "item_type"] == "Zombie", 2.0, 1.0)
    day_idx = np.clip((ts - days[0]).days, 0, len(days) - 1)
    price = floor[day_idx] * premium * np.exp(rng.normal(0.1, 0.1, n_sales))
    sales = pd.DataFrame({"event_id": [f"e{i}" for i in range(n_sales)], "ts": ts.astype("datetime64[ns]"),
                          "item_key": keys, "price": price})
    return MarketData(items, sales, market)


def test_a_feature_at_t_never_changes_when_later_sales_arrive():
    data = synthetic_market()
    vocab = TraitVocabulary(data.items)
    t = pd.Timestamp("2021-03-01 12:00")
    queries = pd.DataFrame({"item_key": data.items.index, "ts": t})

    full = build_features(data, vocab, queries)
    past = data.before(t)  # hands down slices of what `full` computed (sale context, robust floor)
    past_only = build_features(MarketData(past.items, past.sales, past.market), vocab, queries)  # computed afresh

    pd.testing.assert_frame_equal(full, past_only)
    pd.testing.assert_frame_equal(build_features(past, vocab, queries), past_only)
    pd.testing.assert_frame_equal(past.robust_market(), MarketData(past.items, past.sales, past.market).robust_market())


def test_a_sale_at_exactly_t_is_not_seen_at_t():
    data = synthetic_market()
    sale = data.sales.iloc[200]
    vocab = TraitVocabulary(data.items)
    feats = build_features(data, vocab, pd.DataFrame({"item_key": [sale["item_key"]], "ts": [sale["ts"]]}))
    assert not (feats["last_sale_at"] >= sale["ts"]).any()


def test_floor_of_the_sale_day_is_not_used():
    data = synthetic_market()
    vocab = TraitVocabulary(data.items)
    t = pd.Timestamp("2021-02-10 23:00")
    feats = build_features(data, vocab, pd.DataFrame({"item_key": ["1"], "ts": [t]}))
    floor_day_before = data.market.set_index("day").loc[pd.Timestamp("2021-02-09"), "floor"]
    assert feats["floor"].iloc[0] == pytest.approx(floor_day_before)


def test_model_learns_a_type_premium_and_orders_its_band():
    data = synthetic_market(n_sales=1500, seed=1)
    from models.estimator import TrainParams

    model = fit(data, TrainParams(max_iter=60, min_samples_leaf=10))
    t = pd.Timestamp("2021-05-01")
    values = model.predict(data, pd.DataFrame({"item_key": data.items.index, "ts": t}))
    zombie = data.items["item_type"].to_numpy() == "Zombie"
    ratio = values["fair_value"].to_numpy() / values["floor"].to_numpy()
    assert np.median(ratio[zombie]) > 1.5 * np.median(ratio[~zombie])
    assert (values["p10"] <= values["fair_value"]).all() and (values["fair_value"] <= values["p90"]).all()


NEW_COMPS = ["comps_trait2_excess_premium", "comps_type_count_excess_premium", "comps_traits_mean_excess_premium",
             "comps_traits_max_excess_premium", "last_sale_market_adjusted_log_premium"]


def test_comparable_and_carried_forward_features_ignore_later_sales_but_use_earlier_ones():
    data = synthetic_market()
    vocab = TraitVocabulary(data.items)
    t = pd.Timestamp("2021-03-01 12:00")
    queries = pd.DataFrame({"item_key": data.items.index, "ts": t})
    full = build_features(data, vocab, queries)[NEW_COMPS]
    # Later sales priced far off the market: a feature that peeked would move.
    later = data.sales[data.sales["ts"] >= t].assign(price=lambda s: s["price"] * 50)
    shocked = MarketData(data.items, pd.concat([data.sales[data.sales["ts"] < t], later]), data.market)
    pd.testing.assert_frame_equal(full, build_features(shocked, vocab, queries)[NEW_COMPS])
    assert full.notna().mean().min() >= 0.5  # the check above is not vacuous (half the items have 2 traits)
    # An earlier sale priced far off does move them: they are read from the past.
    earlier = data.sales.copy()
    earlier.loc[earlier["ts"] < t, "price"] *= np.where(earlier.loc[earlier["ts"] < t, "item_key"] == "3", 50, 1)
    moved = build_features(MarketData(data.items, earlier, data.market), vocab, queries)[NEW_COMPS]
    assert (moved != full).any().any()


def test_all_trait_comps_average_each_traits_recent_sales():
    from models.features import all_trait_comps

    items = pd.DataFrame({"item_type": ["Human"] * 3, "accessory_count": [2, 1, 1],
                          "accessories": [["Cap", "Pipe"], ["Cap"], ["Pipe"]]}, index=["a", "b", "c"])
    vocab = TraitVocabulary(items)
    context = pd.DataFrame({"ts": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-05"]).astype("datetime64[ns]"),
                            "item_key": ["b", "c", "b"], "excess_premium": [0.2, -0.4, 0.6]})
    at = np.array([np.datetime64("2021-01-04"), np.datetime64("2021-01-06")], dtype="datetime64[ns]")
    means, highs = all_trait_comps(context, items, vocab, np.array(["a", "a"]), at)
    # On 01-04: Cap comps = [0.2], Pipe comps = [-0.4]; on 01-06 Cap = median(0.2, 0.6) = 0.4.
    assert means == pytest.approx([-0.1, 0.0])
    assert highs == pytest.approx([0.2, 0.4])


def test_all_trait_comps_count_every_trait_of_an_item_with_many():
    """A card or a collection other than the punks may have more traits than a punk's 7."""
    from models.features import all_trait_comps

    traits = [f"t{i}" for i in range(10)]
    items = pd.DataFrame({"item_type": ["Human"] * 11, "accessory_count": [10] + [1] * 10,
                          "accessories": [traits] + [[t] for t in traits]}, index=["all"] + traits)
    vocab = TraitVocabulary(items)
    context = pd.DataFrame({"ts": pd.to_datetime(["2021-01-01"] * 10).astype("datetime64[ns]"),
                            "item_key": traits, "excess_premium": [0.0] * 9 + [0.9]})
    means, highs = all_trait_comps(context, items, vocab, np.array(["all"]),
                                   np.array([np.datetime64("2021-01-02")], dtype="datetime64[ns]"))
    assert means == pytest.approx([0.09]) and highs == pytest.approx([0.9])  # the tenth trait is not lost


def test_queries_at_many_times_match_each_time_built_alone():
    """Market features are computed once per distinct time and spread back over the queries."""
    data = synthetic_market()
    vocab = TraitVocabulary(data.items)
    times = [pd.Timestamp("2021-02-01 08:00"), pd.Timestamp("2021-03-15 20:00"), pd.Timestamp("2021-04-10")]
    queries = pd.DataFrame({"item_key": [k for _ in times for k in data.items.index[:15]],
                            "ts": [t for t in times for _ in range(15)]}).sample(frac=1, random_state=1)
    together = build_features(data, vocab, queries)
    alone = pd.concat([build_features(data, vocab, queries[queries["ts"] == t]) for t in times]).loc[queries.index]
    pd.testing.assert_frame_equal(together, alone)


def test_predicting_in_slices_of_rows_gives_the_same_values(monkeypatch):
    from models import estimator
    from models.estimator import TrainParams

    data = synthetic_market(n_sales=600, seed=2)
    model = fit(data, TrainParams(max_iter=20, min_samples_leaf=10))
    queries = pd.DataFrame({"item_key": data.items.index, "ts": pd.Timestamp("2021-04-01")})
    feats = build_features(data, model.vocab, queries)
    whole = model.predict_features(feats)
    monkeypatch.setattr(estimator, "PREDICT_ROWS", 7)
    pd.testing.assert_frame_equal(model.predict_features(feats), whole)


def attribute_items() -> pd.DataFrame:
    return pd.DataFrame({"item_type": ["Human"] * 5 + ["Zombie"], "accessory_count": [1] * 6,
                         "accessories": [["Cap"]] * 6,
                         "gender": ["Male", "Male", "Female", "Male", "Female", "Male"],
                         "skin_tone": ["Light", "Medium", "Albino", "Light", "Medium", ""]},
                        index=list("abcdef"))


def test_attribute_levels_are_every_level_but_the_commonest_and_the_empty_one():
    vocab = TraitVocabulary(attribute_items())
    # Light and Medium tie at 2: the first name is the reference; the zombie's "" is no level.
    assert vocab.attribute_levels == {"gender": ["Female"], "skin_tone": ["Medium", "Albino"]}
    columns = vocab.item_feature_columns(attribute_items())
    assert columns["gender:Female"].tolist() == [0, 0, 1, 0, 1, 0]
    assert columns["skin_tone:Albino"].tolist() == [0, 0, 1, 0, 0, 0]
    assert "gender:Male" not in columns and "skin_tone:" not in columns


def test_attributes_reach_the_hedonic_design_and_a_vocabulary_from_before_them_sees_none():
    from models.hedonic import item_design

    items = attribute_items()
    vocab = TraitVocabulary(items)
    design = item_design(items, vocab).toarray()
    assert design[:, -3:].tolist() == [[0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]]
    old = TraitVocabulary(items)
    del old.attribute_levels  # as unpickled from an artifact trained before the twelfth round
    assert not any(":" in c and c.split(":")[0] in ("gender", "skin_tone") for c in old.item_feature_columns(items))
    assert item_design(items, old).shape[1] == design.shape[1] - 3
    # Items loaded without the columns (another collection) get zeros, not an error.
    bare = items.drop(columns=["gender", "skin_tone"])
    assert TraitVocabulary(bare).attribute_levels == {}
    assert vocab.item_feature_columns(bare)["gender:Female"].tolist() == [0] * 6


def test_a_training_row_known_only_to_the_hour_sees_nothing_of_its_hour():
    """Two sales of one hour known only to the hour (models.times): either may
    have come first, so neither trains with the other in its features. Exact times keep theirs."""
    from models.estimator import training_frame
    from models.features import valuation_moments
    from models.times import hour_precision

    data = synthetic_market()
    sales = data.sales.iloc[:300].copy()
    hour = pd.Timestamp("2021-03-10 15:00")
    same_hour = pd.DataFrame({"event_id": ["a", "b"], "ts": [hour + pd.Timedelta(minutes=3),
                                                             hour + pd.Timedelta(minutes=40)],
                              "item_key": ["1", "2"], "price": [50.0, 60.0]})
    sales = pd.concat([sales[sales["ts"] < hour], same_hour], ignore_index=True)
    vocab = TraitVocabulary(data.items)

    def second_row_features(precision: str) -> pd.Series:
        marked = sales.assign(hour_precision=hour_precision([precision] * len(sales)))
        feats, _, times = training_frame(MarketData(data.items, marked, data.market), vocab)
        assert times[-1] == same_hour["ts"].iloc[1]  # the recency weight reads the sale's own time
        return feats.iloc[-1]

    def features_at(t: pd.Timestamp) -> pd.Series:
        return build_features(MarketData(data.items, sales, data.market), vocab,
                              pd.DataFrame({"item_key": ["2"], "ts": [t]})).iloc[0]

    exact, hourly = second_row_features("second"), second_row_features("hour")
    pd.testing.assert_series_equal(exact, features_at(same_hour["ts"].iloc[1]), check_names=False)
    pd.testing.assert_series_equal(hourly, features_at(hour), check_names=False)
    assert exact["sales_count_3d"] > hourly["sales_count_3d"]  # the 15:03 sale is seen by one only
    assert list(valuation_moments(sales.assign(hour_precision=hour_precision(["hour"] * len(sales))))
                .iloc[-2:]) == [hour, hour]
    exact_times = sales.assign(hour_precision=hour_precision(["second"] * len(sales)))
    assert valuation_moments(exact_times).equals(sales["ts"])  # an exact source keeps every time


def test_a_sale_known_only_to_the_hour_is_known_once_its_hour_is_over():
    """MarketData.before(t): a sale recorded at 15:10 of a source that gives only the hour may
    have come at 15:45, so a tick at 15:30 must not read it; one with an exact time is read."""
    from models.times import hour_precision

    data = synthetic_market()
    sales = data.sales.iloc[:300].copy()
    hour = pd.Timestamp("2021-03-10 15:00")
    recorded = pd.DataFrame({"event_id": ["h", "s"], "ts": [hour + pd.Timedelta(minutes=10)] * 2,
                             "item_key": ["1", "2"], "price": [50.0, 60.0]})
    sales = pd.concat([sales[sales["ts"] < hour], recorded], ignore_index=True)
    sales["hour_precision"] = hour_precision(["second"] * (len(sales) - 2) + ["hour", "second"])
    market = MarketData(data.items, sales, data.market)

    def known_at(t: str) -> set[str]:
        return set(market.before(pd.Timestamp(t)).sales["event_id"]) & {"h", "s"}

    assert known_at("2021-03-10 15:10") == set()
    assert known_at("2021-03-10 15:30") == {"s"}
    assert known_at("2021-03-10 16:00") == {"h", "s"}
    assert len(market.before(pd.Timestamp("2021-03-10 15:30")).context()) == len(sales) - 1


def test_the_floor_volatility_is_per_day_though_the_floor_has_gaps():
    """A floor observed only every 4th day (2017-2020 has gaps of up to 10 days) moves as much
    per day as one observed daily: each change counts per square root of the days it spans."""
    from models.features import market_features

    rng = np.random.default_rng(1)
    days = pd.date_range("2019-01-01", periods=600, freq="D")
    market = pd.DataFrame({"day": days, "floor": 10 * np.exp(np.cumsum(rng.normal(0, 0.03, len(days)))),
                           "eth_usd": 2000.0})
    context = pd.DataFrame({"ts": [days[0]], "log_premium": [0.1]})
    queries = days[100:].to_numpy()

    def volatility(observed: pd.DataFrame) -> float:
        data = MarketData(pd.DataFrame(), pd.DataFrame(), observed.reset_index(drop=True))
        return float(np.nanmean(market_features(data, context, queries)["floor_volatility_30d"]))

    daily, every_fourth = volatility(market), volatility(market.iloc[::4])
    assert daily == pytest.approx(0.03, rel=0.1)
    assert every_fourth == pytest.approx(daily, rel=0.15)  # a change per observation read 2x
