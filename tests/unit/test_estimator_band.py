"""The band's two forms (models/estimator.py): the premium's own quantiles, the sales' spread
around the median's value, and the averaged band the model ships with."""

import numpy as np
import pandas as pd
import pytest

from models.estimator import SPREAD_BAND, VOLATILITY_COLUMN, TrainParams, fit
from models.features import build_features
from tests.unit.test_features import synthetic_market

# The trees' band and value alone: the ridge blended into the fair value has its own tests
# (test_estimator_blend.py).
PARAMS = dict(max_iter=40, band_max_iter=20, min_samples_leaf=10, linear_weight=0.0)
DATA = synthetic_market(n_sales=600)
QUERIES = pd.DataFrame({"item_key": DATA.items.index, "ts": pd.Timestamp("2021-05-01")})
FITS: dict[tuple, object] = {}


def model_of(band_method: str, widening: float = 1.0):
    key = (band_method, widening)
    if key not in FITS:
        FITS[key] = fit(DATA, TrainParams(**PARAMS, band_method=band_method, band_market_widening=widening))
    return FITS[key]


def values(band_method: str, widening: float = 1.0) -> pd.DataFrame:
    return model_of(band_method, widening).predict(DATA, QUERIES)


def features(model) -> tuple[pd.DataFrame, np.ndarray]:
    feats = build_features(DATA, model.vocab, QUERIES)
    return feats, model.bins.transform(feats[model.columns].to_numpy(dtype=float))


def median_values(model) -> np.ndarray:
    """floor x exp(what the median model alone predicts) for QUERIES."""
    feats, x = features(model)
    return feats["floor"].to_numpy() * np.exp(model.estimators["p50"].predict(x))


def test_every_form_holds_its_fair_value_and_leaves_the_median_fit_unchanged():
    medians = {}
    for method in ("premium", "spread", "averaged"):
        model, v = model_of(method), values(method)
        assert (v["p10"] <= v["fair_value"]).all() and (v["fair_value"] <= v["p90"]).all()
        assert (v["p10"] < v["p90"]).all()
        medians[method] = median_values(model)
    # The median model is the same fit whatever the band; only the band differs.
    np.testing.assert_array_equal(medians["premium"], medians["spread"])
    np.testing.assert_array_equal(medians["premium"], medians["averaged"])
    assert not np.allclose(values("premium")["p10"], values("spread")["p10"])
    # The spread band alone never moves the fair value off the median model's.
    np.testing.assert_allclose(values("spread")["fair_value"], medians["spread"], rtol=1e-12)


def test_the_averaged_band_is_the_mean_of_the_two_in_log_and_keeps_the_premium_fair_value():
    premium, spread, averaged = values("premium"), values("spread"), values("averaged")
    # Same fair value as the premium form (the middle of its three values).
    np.testing.assert_allclose(averaged["fair_value"], premium["fair_value"], rtol=1e-12)
    # Where neither end had to be pulled to the fair value, the ends are geometric means.
    mean_low = np.sqrt(premium["p10"] * spread["p10"])
    mean_high = np.sqrt(premium["p90"] * spread["p90"])
    inside = (mean_low <= averaged["fair_value"]) & (mean_high >= averaged["fair_value"])
    assert inside.mean() > 0.9
    np.testing.assert_allclose(averaged["p10"][inside], mean_low[inside], rtol=1e-9)
    np.testing.assert_allclose(averaged["p90"][inside], mean_high[inside], rtol=1e-9)


def test_the_spread_band_widens_by_the_market_volatility():
    feats, x = features(model_of("spread"))
    volatility = np.nan_to_num(feats[VOLATILITY_COLUMN].to_numpy(dtype=float))
    assert volatility.max() > 0
    narrow, wide = values("spread", widening=0.0), values("spread", widening=2.0)
    np.testing.assert_allclose(np.log(narrow["p10"] / wide["p10"]), 2.0 * volatility, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.log(wide["p90"] / narrow["p90"]), 2.0 * volatility, rtol=1e-9, atol=1e-12)
    assert set(SPREAD_BAND) <= set(model_of("spread").estimators)


def test_the_spread_band_has_the_same_shape_at_any_premium():
    # Every sale is its type's premium (x1 or x2) times the same noise, so the band's ends as
    # ratios to the fair value should not depend on the type.
    zombie = DATA.items["item_type"].to_numpy() == "Zombie"
    assert zombie.any() and (~zombie).any()

    def low_end_gap(method: str) -> float:
        v = values(method)
        low = np.log(v["fair_value"] / v["p10"])
        return abs(np.median(low[zombie]) - np.median(low[~zombie]))

    assert low_end_gap("spread") < 0.1
    # The premium band, fitted apart from the median, does depend on the type here: this market
    # is one where the check can fail. The averaged band sits between the two.
    assert low_end_gap("premium") > 0.3
    assert low_end_gap("spread") < low_end_gap("averaged") < low_end_gap("premium")


def test_an_unknown_band_method_is_refused():
    with pytest.raises(ValueError, match="band_method"):
        TrainParams(band_method="wide")


def test_the_premium_band_around_the_ridge_follows_the_type_the_quantiles_alone_miss():
    # Fitted around the floor, the premium's low quantile barely moves for the zombies (each sits
    # above it, where the pinball loss's gradient is only 0.05); fitted to the residual from the
    # ridge regression, which prices the type, its ends keep the same shape for both types.
    zombie = DATA.items["item_type"].to_numpy() == "Zombie"
    params = {**PARAMS, "linear_weight": 0.4, "band_method": "premium"}
    around = {base: fit(DATA, TrainParams(**params, premium_band_base=base)) for base in ("floor", "ridge")}
    assert around["ridge"].premium_band_base == "ridge" and around["floor"].premium_band_base == "floor"

    def low_end_gap(model) -> float:
        v = model.predict(DATA, QUERIES)
        assert (v["p10"] <= v["fair_value"]).all() and (v["fair_value"] <= v["p90"]).all()
        low = np.log(v["fair_value"] / v["p10"])
        return abs(np.median(low[zombie]) - np.median(low[~zombie]))

    assert low_end_gap(around["floor"]) > 0.3
    assert low_end_gap(around["ridge"]) < 0.15
    # The band's models predict the residual: its high end is the ridge's value plus theirs (or
    # the median, or the fair value, where the band would not hold them).
    model = around["ridge"]
    feats, x = features(model)
    floor = feats["floor"].to_numpy()
    ridge = model.linear.predict(feats[model.columns].to_numpy(dtype=float))
    got = model.predict(DATA, QUERIES)
    expected = np.maximum.reduce([ridge + model.estimators["p90"].predict(x), model.estimators["p50"].predict(x),
                                  np.log(got["fair_value"].to_numpy() / floor)])
    np.testing.assert_allclose(np.log(got["p90"].to_numpy() / floor), expected, rtol=1e-9)


def test_a_premium_band_around_the_ridge_needs_the_ridge():
    # With no ridge regression (linear_weight 0) there is nothing to fit around: refused, with why.
    with pytest.raises(ValueError, match="linear_weight"):
        TrainParams(**PARAMS, premium_band_base="ridge")


class Fixed:
    """An estimator stand-in predicting given log values, one per row."""

    def __init__(self, *values: float):
        self.values = np.array(values)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.values[: len(x)]


def test_the_spread_form_is_centred_on_the_fair_value_and_a_form_that_misses_it_is_left_out():
    from models.estimator import FairValueModel, LinearPremium

    # Median 0 everywhere; the premium form is -0.2 .. 0.3, the spread form -0.1 .. +0.2 or +0.6
    # around the fair value; the ridge says 0 or 1, blended half and half, so the fair value is
    # 0, 0.5 and 0.5.
    estimators = {"p50": Fixed(0, 0, 0), "p10": Fixed(-0.2, -0.2, -0.2), "p90": Fixed(0.3, 0.3, 0.3),
                  "spread_low": Fixed(-0.1, -0.1, -0.1), "spread_high": Fixed(0.2, 0.6, 0.2)}
    ridge = LinearPremium(slope=np.array([1.0]), if_missing=np.array([0.0]), intercept=0.0)
    feats = pd.DataFrame({"ridge": [0.0, 1.0, 1.0], "floor": 1.0, VOLATILITY_COLUMN: 0.0,
                          "last_price": np.nan, "last_sale_at": pd.NaT})

    def band(keys: tuple[str, ...]) -> np.ndarray:
        model = FairValueModel(vocab=None, columns=["ridge"], linear=ridge, linear_weight=0.5,
                               estimators={k: estimators[k] for k in keys})
        return np.log(model.predict_features(feats)[["p10", "fair_value", "p90"]].to_numpy())

    np.testing.assert_allclose(band(tuple(estimators)), [
        [-0.15, 0.0, 0.25],  # both forms hold 0: their mean
        [0.40, 0.5, 1.10],  # the premium form misses 0.5: the spread form alone, around 0.5
        [0.40, 0.5, 0.70],
    ], atol=1e-12)
    # The premium form alone, where it misses the value: held to it.
    np.testing.assert_allclose(band(("p50", "p10", "p90"))[1], [-0.2, 0.5, 0.5], atol=1e-12)
