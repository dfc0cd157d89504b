"""The bagged median (TrainParams.median_models): the mean of several differently seeded models."""

import numpy as np
import pytest
from pydantic import ValidationError

from models.estimator import MeanOfModels, TrainParams, _quantile_model, fit
from tests.unit.test_features import synthetic_market


def test_the_bagged_median_is_the_mean_of_its_models_and_they_differ():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.3, size=400)
    params = TrainParams(max_iter=30)
    models = [_quantile_model(params, 0.5, median=True, seed=i, max_features=0.5).fit(x, y) for i in range(3)]
    bagged = MeanOfModels(models)
    each = np.array([m.predict(x) for m in models])
    assert np.allclose(bagged.predict(x), each.mean(axis=0))
    assert not np.allclose(each[0], each[1])  # a random half of the features each: not one model thrice


def test_random_state_is_held_to_numpys_seed_range():
    assert TrainParams(random_state=2**32 - 1).random_state == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(ValidationError, match="random_state"):
            TrainParams(random_state=bad)


def test_the_largest_random_state_trains_a_bagged_median():
    # Each of the models is seeded random_state + i, which must wrap into numpy's range.
    model = fit(synthetic_market(n_sales=300), TrainParams(max_iter=5, band_max_iter=5, median_models=2,
                                                              random_state=2**32 - 1))
    assert isinstance(model.estimators["p50"], MeanOfModels)
