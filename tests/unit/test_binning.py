"""Shared bin edges must give the trees scikit-learn grows on the raw columns."""

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from models.binning import SharedBins, column_edges


def data(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.lognormal(size=n),                       # continuous: weighted percentile edges
        rng.integers(0, 2, size=n).astype(float),    # one-hot: a midpoint edge
        rng.integers(0, 7, size=n).astype(float),    # a count: midpoints
        np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),  # missing values
        np.full(n, 4.0),                             # constant: no edge
    ])
    y = np.log1p(x[:, 0]) + 0.3 * x[:, 1] - 0.1 * x[:, 2] + np.nan_to_num(x[:, 3]) * 0.2 + rng.normal(0, 0.1, n)
    weights = 0.5 ** (rng.uniform(0, 720, size=n) / 180)  # recency weights, as estimator.fit makes them
    return x, y, weights


def model(**kw):
    return HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=30, max_bins=63, early_stopping=False,
                                         random_state=7, **kw)


def test_edges_follow_the_rule_on_small_columns():
    w = np.ones(4)
    assert list(column_edges(np.array([1.0, 3.0, 3.0, 5.0]), w, 63)) == [2.0, 4.0]  # midpoints
    assert len(column_edges(np.array([2.0, 2.0, np.nan, 2.0]), w, 63)) == 0


def test_bin_numbers_put_values_on_the_side_of_the_edge_scikit_learn_does():
    bins = SharedBins(np.array([[1.0], [3.0], [5.0]]), np.ones(3), 63)  # edges 2, 4
    out = bins.transform(np.array([[0.5], [2.0], [2.5], [4.0], [9.0], [np.nan]]))
    assert out[:5, 0].tolist() == [0, 0, 1, 1, 2] and np.isnan(out[5, 0])


def test_trees_on_bin_numbers_predict_what_trees_on_raw_columns_predict():
    x, y, w = data()
    raw = model().fit(x, y, sample_weight=w)
    bins = SharedBins(x, w, 63)
    binned = model().fit(bins.transform(x), y, sample_weight=w)
    x_new, _, _ = data(n=500, seed=11)
    np.testing.assert_allclose(binned.predict(bins.transform(x_new)), raw.predict(x_new), rtol=0, atol=1e-12)
