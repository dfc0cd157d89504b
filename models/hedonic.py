"""What an item's traits are worth together: a hedonic ridge regression of the excess premium.

The comparable-sales features read each trait's recent sales on their own (the median of the
last 15 sales sharing the rarest trait, ...), so a trait seen mostly on items with other
valuable traits takes their premium too. One regression of every sale's excess premium (its
log premium over the market of its week) on all trait, type and accessory-count indicators at
once separates them, and it prices a rare combination from each part's sales.

It is refitted at each month start on the sales before it (the last two years, recent ones
weighing more) and values every query of that month, so a feature at t sees only sales before
t and training, nowcast and replay compute it alike. Walk-forward on Q2 and Q3 2021 (bench/tune.py)
took 0.2-0.4 points of MAPE off each fold (docs/model.md, fourth round).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import linalg, sparse

if TYPE_CHECKING:  # features builds the hedonic feature, so it imports this module
    from models.features import TraitVocabulary

LOOKBACK = pd.Timedelta(days=730)
HALF_LIFE_DAYS = 180.0  # the trees' recency half-life (estimator.TrainParams)
ALPHA = 3.0
MIN_SALES = 100  # fewer sales before a month start: no fit, the feature is NaN that month


def item_design(items: pd.DataFrame, vocab: TraitVocabulary, member: np.ndarray | None = None) -> sparse.csr_matrix:
    """One row per item: its traits, its type, its accessory count and its attribute levels
    (TraitVocabulary.attribute_indicators) as 0/1 indicators. `member` is vocab.membership(items)
    when the caller has it."""
    member = sparse.csr_matrix((vocab.membership(items) if member is None else member)[:-1], dtype=np.float64)
    type_codes, _ = pd.factorize(items["item_type"])
    count_codes, _ = pd.factorize(items["accessory_count"])
    indicators = [member]
    for codes in (type_codes, count_codes):
        codes = np.where(codes < 0, codes.max(initial=0) + 1, codes)  # a missing value is its own level
        indicators.append(sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                                            shape=(len(codes), codes.max(initial=0) + 1)))
    attributes = vocab.attribute_indicators(items)
    if attributes:
        indicators.append(sparse.csr_matrix(np.column_stack(list(attributes.values())), dtype=np.float64))
    return sparse.hstack(indicators, format="csr")


def refit_times(query_times: np.ndarray) -> np.ndarray:
    """The month start at or before each query time: the moment its hedonic model was fitted."""
    return pd.DatetimeIndex(query_times).to_period("M").to_timestamp().to_numpy()


def hedonic_premiums(context: pd.DataFrame, design: sparse.csr_matrix, item_of_sale: np.ndarray,
                     item_of_query: np.ndarray, query_times: np.ndarray,
                     fits: dict[np.datetime64, tuple[np.ndarray, float] | None] | None = None) -> np.ndarray:
    """Each query item's excess premium as the hedonic model fitted at its month start prices it
    (NaN where that month had too few sales before it). `design` is `item_design` of the items;
    item_of_* are positions in them (-1: an item not listed; its sales are left out and its
    queries get NaN). `fits` keeps the fit of each month start for the next call on the same
    context and design: a training frame asks for every month twice (the item's feature and the
    net market premium), and the fits were half of its time."""
    fits = {} if fits is None else fits
    fitted_at = refit_times(query_times)
    moments = np.unique(fitted_at)
    fit_months(context, design, item_of_sale, [m for m in moments if m not in fits], fits)
    out = np.full(len(item_of_query), np.nan)
    for moment in moments:
        if fits[moment] is None:
            continue
        coef, intercept = fits[moment]
        asked = np.flatnonzero((fitted_at == moment) & (item_of_query >= 0))
        out[asked] = design[item_of_query[asked]] @ coef + intercept
    return out


def fit_months(context: pd.DataFrame, design: sparse.csr_matrix, item_of_sale: np.ndarray,
               moments: list[np.datetime64], fits: dict) -> None:
    """Fit the hedonic model at each of `moments` on the sales of the LOOKBACK before it (None
    when there are fewer than MIN_SALES) into `fits`. Only the design rows of the sales those
    fits reach are gathered: a nowcast fits one month, not every sale of the market's history."""
    if not moments:
        return
    usable = np.flatnonzero(np.isfinite(context["excess_premium"].to_numpy()) & (item_of_sale >= 0))
    times, excess = context["ts"].to_numpy()[usable], context["excess_premium"].to_numpy()[usable]
    first, last = np.searchsorted(times, [min(moments) - np.timedelta64(LOOKBACK), max(moments)], "left")
    sold = design[item_of_sale[usable[first:last]]]  # in time order, so each fit's sales are a slice of rows
    for moment in moments:
        lo, hi = np.searchsorted(times, [moment - np.timedelta64(LOOKBACK), moment], "left")
        age_days = (moment - times[lo:hi]) / np.timedelta64(1, "D")
        fits[moment] = None if hi - lo < MIN_SALES else weighted_ridge(
            sold[lo - first:hi - first], excess[lo:hi], 0.5 ** (age_days / HALF_LIFE_DAYS), ALPHA)


def weighted_ridge(x: sparse.csr_matrix, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept minimising sum w (y - b - x.beta)^2 + alpha |beta|^2 (b not
    penalised), what sklearn's Ridge fits, from the normal equations of the weighted-centred
    data. With ~100 indicator columns that is one small dense system: sklearn's solvers for sparse
    data with an intercept iterate over every row (30 ms a fit against a few here, and a training
    frame refits at each month start of four years, for both uses of the model)."""
    total = w.sum()
    x_mean = np.asarray(x.T @ w).ravel() / total
    y_mean = w @ y / total
    gram = (x.T @ sparse.diags(w) @ x).toarray() - total * np.outer(x_mean, x_mean)
    moment = np.asarray(x.T @ (w * y)).ravel() - total * x_mean * y_mean
    coef = linalg.solve(gram + alpha * np.eye(len(gram)), moment, assume_a="pos")
    return coef, float(y_mean - x_mean @ coef)
