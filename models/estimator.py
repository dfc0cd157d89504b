"""Gradient-boosted quantiles of log(price / floor) on trait, market and comparable-sale features.

Three HistGradientBoosting models give the median and the band of the premium over the
(cleaned) floor; the fair value is floor x exp(median). Recent sales weigh more (half-life
in days).

The band is named p10/p90 because it is meant to hold 80 % of sales forward. Fitted at the
0.10/0.90 quantiles it held only ~70 % of Q2-Q3 2021 sales forward (the market moves after
training), so the band models are fitted at 0.05/0.95; walk-forward on 2021-04..2021-09 gave
82-84 % coverage. Coverage is measured on every replay and holdout, not assumed.
`TrainParams.band_around_median` fits the band models to the sales' distance from the median
instead (tried in the eighth round of docs/model.md, not the default).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from models.binning import SharedBins
from models.features import MarketData, TraitVocabulary, build_features, model_columns

PREDICT_ROWS = 100_000  # rows valued at once (see predict_features)


@dataclass
class TrainParams:
    max_iter: int = 200
    learning_rate: float = 0.05
    # The band needs less precision than the median: fewer, larger steps (half the fit time).
    band_max_iter: int = 100
    band_learning_rate: float = 0.1
    max_bins: int = 63
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    recency_half_life_days: float = 180.0
    random_state: int = 7
    # The median as the mean of this many boosted models, each splitting on a random share
    # `median_max_features` of the features (its own seed): averaging takes out part of the
    # fit-to-fit noise. 1 and 1.0: one model on every feature.
    median_models: int = 1
    median_max_features: float = 1.0
    # The band: the quantiles its two models are fitted at (see the module docstring for why not
    # 0.10/0.90), and whether they learn the spread of the sales around the median's value.
    band_low: float = 0.05
    band_high: float = 0.95
    band_around_median: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MeanOfModels:
    """Several regressors fitted to the same rows, predicting their mean."""

    models: list[HistGradientBoostingRegressor]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(x) for m in self.models], axis=0)


@dataclass
class FairValueModel:
    vocab: TraitVocabulary
    columns: list[str]
    estimators: dict[str, HistGradientBoostingRegressor | MeanOfModels]
    params: dict[str, Any] = field(default_factory=dict)
    name: str = "hgb-quantile-v0"
    bins: SharedBins | None = None  # None in artifacts trained before the edges were shared
    # True: the p10/p90 models predict the band's ends relative to the median (log ratios).
    band_around_median: bool = False

    def predict(self, data: MarketData, queries: pd.DataFrame, threads: int | None = None) -> pd.DataFrame:
        """Fair value and band for each (item_key, ts) query, from data strictly before ts."""
        feats = build_features(data, self.vocab, queries)
        return self.predict_features(feats, threads)

    def predict_features(self, feats: pd.DataFrame, threads: int | None = None) -> pd.DataFrame:
        """`threads` caps the OpenMP threads of the trees' predict (None: scikit-learn's default,
        one per core). On a shared or busy host, threads spinning at OpenMP barriers made a
        10k-row predict 4-5x slower than one thread (bench/nowcast.py)."""
        logs = np.empty((len(feats), 3))
        with threadpool_limits(limits=threads, user_api="openmp"):
            # In slices of rows: the float64 matrix of a 1M-item nowcast alone was 1 GiB. Trees
            # value each row on its own, so slices give the same values.
            for start in range(0, len(feats), PREDICT_ROWS):
                x = feats.iloc[start:start + PREDICT_ROWS][self.columns].to_numpy(dtype=float)
                if self.bins is not None:
                    x = self.bins.transform(x)
                median = self.estimators["p50"].predict(x)
                low, high = self.estimators["p10"].predict(x), self.estimators["p90"].predict(x)
                if self.band_around_median:  # the ends as log ratios to the median, which they hold
                    low, high = median + np.minimum(low, 0.0), median + np.maximum(high, 0.0)
                logs[start:start + len(x)] = np.column_stack([low, median, high])
        logs.sort(axis=1)  # quantile models trained apart can cross; the band must not
        floor = feats["floor"].to_numpy(dtype=float)
        out = pd.DataFrame(
            {
                "fair_value": floor * np.exp(logs[:, 1]),
                "p10": floor * np.exp(logs[:, 0]),
                "p90": floor * np.exp(logs[:, 2]),
                "floor": floor,
                "last_price": feats["last_price"].to_numpy(),
                "last_sale_at": feats["last_sale_at"].to_numpy(),
            },
            index=feats.index,
        )
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        joblib.dump(self, buf, compress=3)
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> FairValueModel:
        """Only call this on bytes whose sha256 was verified (storage.artifacts does)."""
        model = joblib.load(io.BytesIO(data))
        if not isinstance(model, FairValueModel):
            raise TypeError(f"artifact holds {type(model).__name__}, not FairValueModel")
        return model


def training_frame(data: MarketData, vocab: TraitVocabulary) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, log-premium targets and sale times for every sale with a known floor before it."""
    queries = data.sales[["item_key", "ts"]].reset_index(drop=True)
    feats = build_features(data, vocab, queries)
    target = np.log(data.sales["price"].to_numpy(dtype=float) / feats["floor"].to_numpy())
    ok = np.isfinite(target)
    return feats[ok].reset_index(drop=True), target[ok], queries["ts"].to_numpy()[ok]


def fit(data: MarketData, params: TrainParams | None = None) -> FairValueModel:
    params = params or TrainParams()
    vocab = TraitVocabulary(data.items)
    feats, target, sale_times = training_frame(data, vocab)
    if len(target) < 50:
        raise ValueError(f"only {len(target)} usable sales to train on; need at least 50")
    # A column with no value in the training sales (the hedonic feature of a market too young
    # for a fit) tells the trees nothing, and scikit-learn cannot bin it: it is left out.
    columns = [c for c in model_columns(feats) if feats[c].notna().any()]
    x = feats[columns].to_numpy(dtype=float)
    age_days = (sale_times.max() - sale_times) / np.timedelta64(1, "D")
    weights = 0.5 ** (age_days / params.recency_half_life_days)
    bins = SharedBins(x, weights, params.max_bins)
    x = bins.transform(x)
    medians = [_quantile_model(params, 0.5, median=True, seed=params.random_state + i,
                               max_features=params.median_max_features).fit(x, target, sample_weight=weights)
               for i in range(params.median_models)]
    median = medians[0] if len(medians) == 1 else MeanOfModels(medians)
    band_target = target - median.predict(x) if params.band_around_median else target
    low = _quantile_model(params, params.band_low, median=False).fit(x, band_target, sample_weight=weights)
    high = _quantile_model(params, params.band_high, median=False).fit(x, band_target, sample_weight=weights)
    estimators = {"p10": low, "p50": median, "p90": high}
    return FairValueModel(vocab=vocab, columns=columns, estimators=estimators, params=params.as_dict(), bins=bins,
                          band_around_median=params.band_around_median)


def _quantile_model(params: TrainParams, q: float, median: bool, seed: int | None = None,
                    max_features: float = 1.0) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        loss="quantile",
        quantile=q,
        max_iter=params.max_iter if median else max(10, min(params.band_max_iter, params.max_iter)),
        learning_rate=params.learning_rate if median else params.band_learning_rate,
        max_bins=params.max_bins,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        max_features=max_features,
        random_state=params.random_state if seed is None else seed,
        # scikit-learn's default ("auto") holds out a random 10 % of the sales above 10,000 for
        # early stopping, which never stopped a fit here before max_iter: it only lost data.
        early_stopping=False,
    )
