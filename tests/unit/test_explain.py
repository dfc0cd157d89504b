"""Explanations: drivers that add up to the fair value, comparables that are the features' own sales."""

import numpy as np
import pandas as pd
import pytest

from models.estimator import TrainParams, fit
from models.explain import explain, feature_groups
from models.features import COMPS_TRAIT, COMPS_TYPE, build_features, comparable_sale_rows
from tests.unit.test_features import synthetic_market

T = pd.Timestamp("2021-04-20 12:00")


@pytest.fixture(scope="module")
def market_and_model():
    data = synthetic_market()
    return data, fit(data.before(T), TrainParams(max_iter=30, band_max_iter=10))


def test_drivers_and_interactions_add_up_to_the_fair_value(market_and_model):
    data, model = market_and_model
    key = data.sales["item_key"].iloc[-1]

    out = explain(model, data, key, T, top=50)

    predicted = model.predict(data, pd.DataFrame({"item_key": [key], "ts": [T]}))["fair_value"].iloc[0]
    assert out["fair_value"] == pytest.approx(predicted)
    total = sum(d["effect"] for d in out["drivers"]) + out["interactions"]
    assert out["typical_value"] * np.exp(total) == pytest.approx(out["fair_value"])
    effects = [abs(d["effect"]) for d in out["drivers"]]
    assert effects == sorted(effects, reverse=True)
    # effect_pct is the effect as a percentage of value, in percent as its name says (a fraction before)
    assert [d["effect_pct"] for d in out["drivers"]] == pytest.approx([100 * np.expm1(d["effect"])
                                                                      for d in out["drivers"]])
    assert {d["group"] for d in out["drivers"]} >= {f"trait:{t}" for t in data.items.at[key, "accessories"]}


def test_explanation_sees_only_the_past(market_and_model):
    data, model = market_and_model
    key = data.sales["item_key"].iloc[-1]
    assert explain(model, data, key, T) == explain(model, data.before(T), key, T)


def test_comparable_sales_are_the_ones_the_features_used(market_and_model):
    data, model = market_and_model
    feats = build_features(data, model.vocab, pd.DataFrame({"item_key": data.items.index, "ts": T}))
    rarest = model.vocab.rarest_trait(data.items)
    medians_checked = 0
    for key in data.items.index[:20]:
        rows = comparable_sale_rows(data, rarest, rarest[key], T, COMPS_TRAIT)
        assert len(rows) == feats.loc[feats.index[data.items.index.get_loc(key)], "comps_trait_count"]
        assert (rows["ts"] < T).all()
        if len(rows):
            assert np.median(rows["excess_premium"]) == pytest.approx(
                feats["comps_trait_excess_premium"].iloc[data.items.index.get_loc(key)])
            medians_checked += 1
        by_type = comparable_sale_rows(data, data.items["item_type"], data.items.at[key, "item_type"], T, COMPS_TYPE)
        assert len(by_type) <= COMPS_TYPE.k and (by_type["ts"] < T).all()
    assert medians_checked > 0  # items without comparables only would leave the medians unchecked


def test_feature_groups_name_each_own_trait_and_cover_every_item_column():
    columns = ["trait:Cap", "trait:Pipe", "type:Human", "type_log_frequency", "accessory_count",
               "last_sale_log_premium", "comps_trait_count", "market_premium_7d", "gender:Female",
               "skin_tone:Albino", "skin_tone:Dark"]
    groups = feature_groups(columns, ["Cap"])
    assert groups["trait:Cap"] == ["trait:Cap"] and groups["traits it lacks"] == ["trait:Pipe"]
    assert groups["gender"] == ["gender:Female"] and groups["skin tone"] == ["skin_tone:Albino", "skin_tone:Dark"]
    grouped = {c for cols in groups.values() for c in cols}
    assert grouped == set(columns) - {"market_premium_7d"}  # market state is the same for every item at t


def test_a_live_moment_is_asked_of_the_features_at_nanoseconds_with_the_same_explanation(market_and_model,
                                                                                       monkeypatch):
    """A live moment (the caller's clock) is a Timestamp in microseconds: the query frame held it so,
    and features.naive_times converted the column where one at nanoseconds is copied, as the
    nowcast's (models.nowcast.value_all_items). The explanation is that of the same moment in nanoseconds."""
    from datetime import datetime

    import models.explain

    data, model = market_and_model
    key = data.sales["item_key"].iloc[-1]
    live = pd.Timestamp(datetime(2021, 4, 20, 12, 0, 15, 123456))
    assert live.unit == "us"
    asked = []

    def recording(data, vocab, queries):
        asked.append(queries["ts"].dtype)
        return build_features(data, vocab, queries)

    monkeypatch.setattr(models.explain, "build_features", recording)
    assert explain(model, data, key, live) == explain(model, data, key, live.as_unit("ns"))
    assert asked == [np.dtype("datetime64[ns]")] * 2
