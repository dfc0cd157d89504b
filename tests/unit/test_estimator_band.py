"""The band around the median (TrainParams.band_around_median): its models learn how far sales
fall from the median's value, so the band moves with the median instead of being fitted apart."""

import numpy as np
import pandas as pd

from models.estimator import TrainParams, fit
from models.features import build_features
from tests.unit.test_features import synthetic_market

PARAMS = dict(max_iter=40, band_max_iter=20, min_samples_leaf=10)
DATA = synthetic_market(n_sales=600)
QUERIES = pd.DataFrame({"item_key": DATA.items.index, "ts": pd.Timestamp("2021-05-01")})


def values(band_around_median: bool):
    model = fit(DATA, TrainParams(**PARAMS, band_around_median=band_around_median))
    return model, model.predict(DATA, QUERIES)


def median_values(model) -> np.ndarray:
    """floor x exp(what the median model alone predicts) for QUERIES."""
    feats = build_features(DATA, model.vocab, QUERIES)
    x = model.bins.transform(feats[model.columns].to_numpy(dtype=float))
    return feats["floor"].to_numpy() * np.exp(model.estimators["p50"].predict(x))


def test_the_band_around_the_median_holds_it_and_leaves_it_unchanged():
    apart, apart_values = values(False)
    around, around_values = values(True)
    assert around.band_around_median and not apart.band_around_median
    # The median models are the same fit; only the band differs.
    x = around.bins.transform(np.zeros((3, len(around.columns))))
    np.testing.assert_array_equal(around.estimators["p50"].predict(x), apart.estimators["p50"].predict(x))
    assert not np.allclose(around_values["p10"], apart_values["p10"])
    # The fair value is the median model's, whatever the band models say.
    np.testing.assert_allclose(around_values["fair_value"], median_values(around), rtol=1e-12)
    assert (around_values["p10"] <= around_values["fair_value"]).all()
    assert (around_values["fair_value"] <= around_values["p90"]).all()
    assert (around_values["p10"] < around_values["p90"]).all()


def test_the_band_around_the_median_has_the_same_shape_at_any_premium():
    # Every sale is its type's premium (x1 or x2) times the same noise, so the band's ends as
    # ratios to the fair value should not depend on the type.
    zombie = DATA.items["item_type"].to_numpy() == "Zombie"
    assert zombie.any() and (~zombie).any()

    def low_end_gap(band_around_median: bool) -> float:
        _, v = values(band_around_median)
        low = np.log(v["fair_value"] / v["p10"])
        return abs(np.median(low[zombie]) - np.median(low[~zombie]))

    assert low_end_gap(True) < 0.1
    # The band fitted apart from the median does depend on the type here (0.79 against 0.15 in
    # log): this market is one where the check can fail.
    assert low_end_gap(False) > 0.3
