"""Gradient-boosted quantiles of log(price / floor) on trait, market and comparable-sale features.

HistGradientBoosting models give the median and the band of the premium over the (cleaned)
floor. The fair value is floor x exp(premium), the premium a weighted mean (in log) of the trees'
median and a ridge regression on the same features (`linear_weight` of it): two models that err
differently average out part of each one's error (docs/model.md, eleventh round). Recent sales
weigh more (half-life in days).

The band is named p10/p90 because it is meant to hold 80 % of sales forward. It is the average
(in log price) of two bands, each fitted at the 0.05/0.95 quantiles (0.10/0.90 held only ~70 %
of Q2-Q3 2021 sales forward: the market moves after training):

- the premium's own quantiles ("premium"): wide where the market was unsettled, but fitted apart
  from the median, so for rare items its low end sits near the floor;
- the sales' spread around the fair value ("spread": its models learn the sales' spread around
  the trees' median, and it is centred on the blended value), widened on each side by one day's
  market move (the 30-day volatility of the daily floor: a daily nowcast is up to a day old):
  the right shape for every item, but from in-sample residuals, too narrow when the market turns.

Averaging quantiles of two forecasts is the usual way to combine them; the ninth round of
docs/model.md measured it against each alone. A form whose band does not hold an item's fair
value is left out of that item's average (the twentieth round: a rare type's premium
quantiles). Coverage is measured on every replay and holdout, not assumed.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import joblib
import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from models.binning import SharedBins
from models.features import MarketData, TraitVocabulary, build_features, model_columns, valuation_queries

PREDICT_ROWS = 100_000  # rows valued at once (see predict_features)
# The estimators' keys: the median, the premium band's ends, the spread band's ends.
PREMIUM_BAND, SPREAD_BAND = ("p10", "p90"), ("spread_low", "spread_high")
VOLATILITY_COLUMN = "floor_volatility_30d"


# Checked as they are made (an operator's training request names some of them): a wrong type
# or a value out of range is refused with the field's name, before anything is queued.
Rounds = Annotated[int, Field(ge=1, le=10_000)]
Rate = Annotated[float, Field(gt=0, le=1)]


# allow_inf_nan=False: JSON's Infinity and NaN are no setting (and no JSON the database stores).
@pydantic_dataclass(config=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False))
class TrainParams:
    max_iter: Rounds = 200
    learning_rate: Rate = 0.05
    # The band needs less precision than the median: fewer, larger steps. Its four models of
    # 50 rounds predict as fast as the two of 100 it had before the ninth round.
    band_max_iter: Rounds = 50
    band_learning_rate: Rate = 0.2
    max_bins: Annotated[int, Field(ge=2, le=255)] = 63
    max_leaf_nodes: Annotated[int, Field(ge=2, le=10_000)] = 31
    min_samples_leaf: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    l2_regularization: Annotated[float, Field(ge=0, le=1e6)] = 1.0
    recency_half_life_days: Annotated[float, Field(gt=0, le=36_500)] = 180.0
    random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 7  # numpy's seed range
    # The median as the mean of this many boosted models, each splitting on a random share
    # `median_max_features` of the features (its own seed): averaging takes out part of the
    # fit-to-fit noise. 1 and 1.0: one model on every feature.
    median_models: Annotated[int, Field(ge=1, le=20)] = 1
    median_max_features: Annotated[float, Field(gt=0, le=1)] = 1.0
    # The band (module docstring): the quantiles its models are fitted at, which of its two
    # forms it is (the premium's quantiles, the spread around the fair value, or their averaged
    # ends), and how many days' market moves (floor_volatility_30d) widen the spread form.
    band_low: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    band_high: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    band_method: Literal["premium", "spread", "averaged"] = "averaged"
    band_market_widening: Annotated[float, Field(ge=0, le=100)] = 1.0
    # What the premium band's quantiles are fitted around: the floor (the log premium itself) or
    # the ridge regression's value (the premium's residual from it; needs linear_weight > 0).
    premium_band_base: Literal["floor", "ridge"] = "floor"
    # The fair value's share of the ridge regression (0: the trees alone), and its penalty on
    # standardised features (set before it was measured, not tuned).
    linear_weight: Annotated[float, Field(ge=0, le=1)] = 0.4
    linear_alpha: Annotated[float, Field(gt=0, le=1e9)] = 30.0
    # The linear model's loss: squared (ridge), or Huber's, which counts a sale far from the fit
    # (a distressed sale, a wash trade no rule caught) by its distance rather than its square.
    # Huber's is not the default: it read worse in the 2020-21 run-up (docs/model.md, sixteenth round).
    linear_loss: Literal["squared", "huber"] = "squared"
    # The fair value's share of a forest of randomized trees on the ridge's imputed features
    # (0: none), taken from the boosted trees' share (docs/model.md, twenty-second round).
    forest_weight: Annotated[float, Field(ge=0, le=1)] = 0.0
    # The most recent share of the clean sales that are training rows (1: all); the features of
    # each still read the whole market before it (docs/model.md, twenty-sixth round).
    training_share: Annotated[float, Field(gt=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        if self.premium_band_base == "ridge" and self.linear_weight == 0:
            raise ValueError("premium_band_base 'ridge' needs the ridge regression: linear_weight > 0")
        if self.linear_weight + self.forest_weight > 1:
            raise ValueError("linear_weight + forest_weight must be at most 1 (the rest is the boosted trees')")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    # Days of market moves added to each side of the spread band (TrainParams); artifacts from
    # before the ninth round have no spread band, so the default never applies to them.
    band_market_widening: float = 0.0
    # The ridge regression blended into the fair value, and its weight; None and 0 in artifacts
    # from before the eleventh round.
    linear: LinearPremium | None = None
    linear_weight: float = 0.0
    # "ridge": the premium band's models predict the residual from the ridge regression's value
    # (TrainParams.premium_band_base); artifacts from before it have "floor".
    premium_band_base: str = "floor"
    # The forest of randomized trees blended into the fair value (forest_pipeline), and its
    # weight; None and 0 in artifacts from before the twenty-second round.
    forest: Pipeline | None = None
    forest_weight: float = 0.0

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
                rows = feats.iloc[start:start + PREDICT_ROWS]
                raw = rows[self.columns].to_numpy(dtype=float)
                x = raw if self.bins is None else self.bins.transform(raw)
                logs[start:start + len(x)] = self._log_premiums(x, rows, raw)
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

    def _log_premiums(self, x: np.ndarray, rows: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        """Columns p10, fair value, p90 of the log premium over the floor, from the binned
        features `x` (the trees) and the `raw` ones (the ridge regression).

        The trees' value is the middle of their median and the premium band's ends, as it has been
        since the first round: the premium band is fitted apart from the median and can cross it
        (about 2 % of sales), and where it does its end is kept (docs/model.md, eighth round). The
        fair value blends it with the ridge regression's. The spread band is centred on that fair
        value (with no ridge, the middle of three; its models learnt the sales' spread around the
        trees' median; docs/model.md, twentieth round). The band is the mean of the forms that
        hold the fair value, and is held to contain it."""
        median = self.estimators["p50"].predict(x)
        fair = median
        ends = []
        linear = self.linear.predict(raw) if self.linear is not None else None
        if PREMIUM_BAND[0] in self.estimators:
            base = linear if self.premium_band_base == "ridge" else 0.0
            premium = np.sort(np.column_stack([base + self.estimators[PREMIUM_BAND[0]].predict(x), median,
                                               base + self.estimators[PREMIUM_BAND[1]].predict(x)]), axis=1)
            fair = premium[:, 1]
            ends.append((premium[:, 0], premium[:, 2]))
        if self.forest is not None and self.forest_weight > 0:  # its share taken from the trees'
            ridge_share = self.linear_weight if linear is not None else 0.0
            fair = (1 - ridge_share - self.forest_weight) * fair + self.forest_weight * self.forest.predict(finite(raw))
            if linear is not None:
                fair = fair + ridge_share * linear
        elif linear is not None and self.linear_weight > 0:
            fair = (1 - self.linear_weight) * fair + self.linear_weight * linear
        if SPREAD_BAND[0] in self.estimators:
            volatility = rows[VOLATILITY_COLUMN].to_numpy(dtype=float) if VOLATILITY_COLUMN in rows else 0.0
            widening = self.band_market_widening * np.nan_to_num(volatility)
            ends.append((fair + np.minimum(self.estimators[SPREAD_BAND[0]].predict(x), 0.0) - widening,
                         fair + np.maximum(self.estimators[SPREAD_BAND[1]].predict(x), 0.0) + widening))
        lows, highs = np.array([lo for lo, _ in ends]), np.array([hi for _, hi in ends])  # (forms, rows)
        # A form whose band does not hold the item's fair value is no band for that item: the
        # premium quantiles of a rare type stay near the market's (docs/model.md, twentieth
        # round). Where no form holds it (the premium form alone), it is held to it.
        holds = (lows <= fair) & (fair <= highs)
        use = np.where(holds.any(axis=0), holds, True)
        low = np.where(use, lows, 0.0).sum(axis=0) / use.sum(axis=0)
        high = np.where(use, highs, 0.0).sum(axis=0) / use.sum(axis=0)
        return np.column_stack([np.minimum(low, fair), fair, np.maximum(high, fair)])

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


def training_frame(data: MarketData, vocab: TraitVocabulary,
                   rows_from: pd.Timestamp | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, log-premium targets and sale times for every sale with a known floor before it
    (from `rows_from` on, when given: the features still read the whole market before each sale).
    Each sale is valued at its valuation moment (features.valuation_moments): a sale known only
    to the hour sees nothing of that hour."""
    sales = data.sales if rows_from is None else data.sales[data.sales["ts"] >= rows_from]
    feats = build_features(data, vocab, valuation_queries(sales))
    target = np.log(sales["price"].to_numpy(dtype=float) / feats["floor"].to_numpy())
    ok = np.isfinite(target)
    return feats[ok].reset_index(drop=True), target[ok], sales["ts"].to_numpy()[ok]


MIN_TRAINING_SALES = 50


class TooFewSales(ValueError):
    """Fewer usable sales than a model needs (MIN_TRAINING_SALES)."""


def training_threads(threads: int | None):
    """A context in which the fits, and the predicts that name no thread count, use `threads`
    OpenMP threads (None: scikit-learn's default, one per core). One thread is the service's
    default (Settings.train_threads): on a host whose cores are busy, idle OpenMP threads spin at
    the boosting's many barriers and a retrain took 2.6-8.7x as long as on one thread."""
    return threadpool_limits(limits=threads, user_api="openmp")


def fit(data: MarketData, params: TrainParams | None = None, rows_from: pd.Timestamp | None = None) -> FairValueModel:
    """The model of `data`'s sales, or of those from `rows_from` on (the learning curve's smaller
    fractions), whose features read the whole market before each, as a nowcast's do."""
    params = params or TrainParams()
    if params.training_share < 1:
        share_from = data.sales["ts"].quantile(1 - params.training_share)
        rows_from = share_from if rows_from is None else max(rows_from, share_from)
    vocab = TraitVocabulary(data.items)
    feats, target, sale_times = training_frame(data, vocab, rows_from)
    if len(target) < MIN_TRAINING_SALES:
        raise TooFewSales(f"only {len(target)} usable sales to train on; need at least {MIN_TRAINING_SALES}")
    # A column with no value in the training sales (the hedonic feature of a market too young
    # for a fit) tells the trees nothing, and scikit-learn cannot bin it: it is left out.
    columns = [c for c in model_columns(feats) if feats[c].notna().any()]
    raw = feats[columns].to_numpy(dtype=float)
    age_days = (sale_times.max() - sale_times) / np.timedelta64(1, "D")
    weights = 0.5 ** (age_days / params.recency_half_life_days)
    bins = SharedBins(raw, weights, params.max_bins)
    x = bins.transform(raw)
    # One seed per model, wrapped into numpy's range (random_state may be its largest value).
    medians = [_quantile_model(params, 0.5, median=True, seed=(params.random_state + i) % 2**32,
                               max_features=params.median_max_features).fit(x, target, sample_weight=weights)
               for i in range(params.median_models)]
    median = medians[0] if len(medians) == 1 else MeanOfModels(medians)
    estimators = {"p50": median}
    linear = (LinearPremium.fit(raw, target, weights, params.linear_alpha, params.linear_loss)
              if params.linear_weight > 0 else None)
    forest = (forest_pipeline(params.random_state).fit(finite(raw), target, extratreesregressor__sample_weight=weights)
              if params.forest_weight > 0 else None)
    premium_base = params.premium_band_base  # "ridge" only with a ridge regression (TrainParams)
    bands = {"premium": [PREMIUM_BAND], "spread": [SPREAD_BAND], "averaged": [PREMIUM_BAND, SPREAD_BAND]}
    for low_key, high_key in bands[params.band_method]:
        # The spread band learns where each sale sits from the median's value; the premium band
        # the premium itself, or its residual from the ridge regression.
        if low_key == PREMIUM_BAND[0]:
            band_target = target - linear.predict(raw) if premium_base == "ridge" else target
        else:
            band_target = target - median.predict(x)
        estimators[low_key] = _quantile_model(params, params.band_low, median=False).fit(x, band_target,
                                                                                         sample_weight=weights)
        estimators[high_key] = _quantile_model(params, params.band_high, median=False).fit(x, band_target,
                                                                                           sample_weight=weights)
    return FairValueModel(vocab=vocab, columns=columns, estimators=estimators, params=params.as_dict(), bins=bins,
                          band_market_widening=params.band_market_widening, linear=linear,
                          linear_weight=params.linear_weight, premium_band_base=premium_base,
                          forest=forest, forest_weight=params.forest_weight)


# Huber's weights (iteratively reweighted least squares): a sale further than HUBER_K robust
# standard deviations from the fit counts by its distance, not its square. 1.345 is the usual
# constant (95 % of least squares' efficiency on normal errors); a few reweightings settle it.
HUBER_K = 1.345
HUBER_ITERATIONS = 5


def ridge_pipeline(alpha: float) -> Pipeline:
    """A ridge regression of the log premium on the same features: a missing value (an item
    never sold, a market too young for a comparable) becomes the median plus a flag that it was
    missing, and every column is standardised, so one penalty fits them all."""
    return make_pipeline(missing_imputer(), StandardScaler(), Ridge(alpha=alpha))


def missing_imputer() -> SimpleImputer:
    """A missing value as the column's training median plus a flag that it was missing."""
    return SimpleImputer(strategy="median", add_indicator=True)


def forest_pipeline(seed: int) -> Pipeline:
    """A forest of randomized trees (squared loss) on the ridge's imputed features: a missing
    value becomes the column's median plus a flag that it was missing (no scaling: trees do not
    need it). Its settings were fixed before it was measured (docs/model.md, twenty-second round)."""
    return make_pipeline(missing_imputer(),
                         ExtraTreesRegressor(n_estimators=100, min_samples_leaf=5, max_features=0.3,
                                             random_state=seed, n_jobs=1))


def fit_ridge(raw: np.ndarray, target: np.ndarray, weights: np.ndarray, alpha: float,
              loss: str = "squared") -> Pipeline:
    """ridge_pipeline fitted with squared loss, or with Huber's by reweighting each sale by
    min(1, HUBER_K * scale / |residual|), the scale a robust standard deviation of the residuals
    (1.4826 times their median absolute value)."""
    x = finite(raw)
    pipeline = ridge_pipeline(alpha).fit(x, target, ridge__sample_weight=weights)
    for _ in range(HUBER_ITERATIONS if loss == "huber" else 0):
        residual = np.abs(target - pipeline.predict(x))
        scale = 1.4826 * np.median(residual)
        robust = np.minimum(1.0, HUBER_K * scale / np.maximum(residual, 1e-12))
        pipeline = ridge_pipeline(alpha).fit(x, target, ridge__sample_weight=weights * robust)
    return pipeline


def finite(raw: np.ndarray) -> np.ndarray:
    """Infinities as missing: the trees bin them at the ends, a linear model cannot take them."""
    return np.where(np.isfinite(raw), raw, np.nan)


@dataclass
class LinearPremium:
    """A fitted ridge_pipeline folded into one affine map per column: a present value x adds
    slope x, a missing one adds `if_missing` (its imputed median's share plus its flag's). Same
    predictions as the pipeline (a unit test checks it) in a fifth of its time: 0.10 s against
    0.52 s per 100,000 rows of 150 columns, one thread, imputing, flagging and scaling one step
    after another."""

    slope: np.ndarray
    if_missing: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, raw: np.ndarray, target: np.ndarray, weights: np.ndarray, alpha: float,
            loss: str = "squared") -> LinearPremium:
        pipeline = fit_ridge(raw, target, weights, alpha, loss)
        imputer, scaler, ridge = (step for _, step in pipeline.steps)
        n = raw.shape[1]
        coef = ridge.coef_ / scaler.scale_  # per standardised column, back on the raw scale
        slope, flags = coef[:n], coef[n:]
        if_missing = slope * imputer.statistics_
        if_missing[imputer.indicator_.features_] += flags
        intercept = float(ridge.intercept_ - coef @ scaler.mean_)
        return cls(slope=slope, if_missing=if_missing, intercept=intercept)

    def predict(self, raw: np.ndarray) -> np.ndarray:
        present = np.isfinite(raw)
        filled = np.where(present, raw, 0.0)
        return filled @ self.slope + (~present) @ self.if_missing + self.intercept


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
