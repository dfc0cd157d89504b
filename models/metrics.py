"""Forward error metrics, one module for training, replay, gates and the API."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def valuation_metrics(predicted: np.ndarray, actual: np.ndarray,
                      p10: np.ndarray | None = None, p90: np.ndarray | None = None) -> dict[str, Any]:
    """Error of fair values against prices, from each pair's relative error (fair value - price) /
    price: `mape` its mean absolute value, `median_ape` its median absolute value, `bias` its
    median and `mean_bias` its mean (fractions); `rmse` in the prices' currency (ETH for the
    punks); `band_width` the median of log(p90 / p10), `band_score` in log price. A pair without a
    positive price or a fair value is left out, counted in `n_filtered` and by reason in
    `filtered`; the band's figures read the pairs that have both ends (`n_without_band` counts
    the others, which are neither a hit nor a miss)."""
    predicted = np.asarray(predicted, dtype=float)
    actual = np.asarray(actual, dtype=float)
    priced = np.isfinite(actual) & (actual > 0)
    ok = priced & np.isfinite(predicted)
    n = int(ok.sum())
    filtered = {reason: count for reason, count in (("no_price", int((~priced).sum())),
                                                    ("no_fair_value", int((priced & ~ok).sum()))) if count}
    out: dict[str, Any] = {"n": n, "n_filtered": int(len(actual) - n), "filtered": filtered}
    if n == 0:
        return out
    pred, act = predicted[ok], actual[ok]
    rel = (pred - act) / act
    ape = np.abs(rel)
    out.update({
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        # The median signed error (issue #3's definition, what the gates bound); its mean beside
        # it, since a few large overvaluations move the mean and not the median.
        "bias": float(np.median(rel)),
        "mean_bias": float(rel.mean()),
        "rmse": float(np.sqrt(np.mean((pred - act) ** 2))),
        # Rounded as models.signals.signals rounds its thresholds: 1.1 against 1.0 is 0.10000000000000009
        # off in floats, and a price exactly 10 % off counts as within, whatever its scale.
        "within_10pct": float((np.round(ape, 12) <= 0.10).mean()),
        "within_25pct": float((np.round(ape, 12) <= 0.25).mean()),
    })
    if p10 is not None and p90 is not None:
        lo, hi = np.asarray(p10, dtype=float)[ok], np.asarray(p90, dtype=float)[ok]
        banded = np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        if (~banded).any():
            out["n_without_band"] = int((~banded).sum())
        if banded.any():
            lo, hi, act = lo[banded], hi[banded], act[banded]
            out["band_coverage"] = float(((act >= lo) & (act <= hi)).mean())
            # Coverage alone rewards a band wide enough to hold anything: its width and score too.
            out["band_width"] = float(np.median(np.log(hi / lo)))
            out["band_score"] = float(interval_scores(lo, hi, act).mean())
    return out


def interval_scores(p10: np.ndarray, p90: np.ndarray, actual: np.ndarray, alpha: float = 0.2) -> np.ndarray:
    """Per sale, the interval score of the band as a central (1 - alpha) interval, in log price
    (Gneiting & Raftery 2007): its width, plus 2/alpha times how far the price fell outside it.
    Lower is better; coverage alone cannot tell a useful band from one wide enough to hold
    anything. Logs, because the band is proportional: a 10 % miss counts the same at any price."""
    lo, hi, act = (np.log(np.asarray(v, dtype=float)) for v in (p10, p90, actual))
    return (hi - lo) + (2 / alpha) * (np.clip(lo - act, 0, None) + np.clip(act - hi, 0, None))


def day_oracle(predicted: np.ndarray, actual: np.ndarray, days: np.ndarray) -> dict[str, dict[str, float | int]]:
    """What knowing each day's market would give: MAPE and median APE of the predictions as they
    are, with each day's median log error removed, and with the median of the *other* sales of the
    sale's day removed (a day with one sale: none). A reading, not a model: it uses the day's own
    sales. The first oracle is generous (with few sales a day, the day's median holds much of each
    sale's own error); the second is what a value that knew the day's market from every other sale
    could reach."""
    pred, act = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(act) & (pred > 0) & (act > 0)
    error = np.log(pred[ok] / act[ok])  # log of fair value over price
    days = np.asarray(days)[ok]
    day_median, others_median = np.zeros(len(error)), np.zeros(len(error))
    for day in np.unique(days):
        at = np.flatnonzero(days == day)
        day_median[at] = np.median(error[at])
        if len(at) > 1:
            others_median[at] = [np.median(np.delete(error[at], i)) for i in range(len(at))]

    def scores(log_error: np.ndarray) -> dict[str, float | int]:
        ape = np.abs(np.expm1(log_error))  # |fair value - price| / price
        return {"n": len(ape), "mape": float(ape.mean()), "median_ape": float(np.median(ape))}

    return {"as_is": scores(error), "day_median_removed": scores(error - day_median),
            "others_median_removed": scores(error - others_median)}


def paired_mape_difference(predicted_a: np.ndarray, predicted_b: np.ndarray, actual: np.ndarray,
                           blocks: np.ndarray, draws: int = 2000, seed: int = 0) -> dict[str, float | int]:
    """MAPE of predictions B minus MAPE of predictions A on the same sales, with a 95 % interval
    (`paired_difference`). Sales that either side cannot value are left out of both."""
    a, b, act = (np.asarray(v, dtype=float) for v in (predicted_a, predicted_b, actual))
    with np.errstate(divide="ignore", invalid="ignore"):
        ape_a, ape_b = (np.where(act > 0, np.abs(p - act) / act, np.nan) for p in (a, b))
    return paired_difference(ape_a, ape_b, blocks, draws, seed)


def paired_difference(loss_a: np.ndarray, loss_b: np.ndarray, blocks: np.ndarray, draws: int = 2000,
                      seed: int = 0) -> dict[str, float | int]:
    """Mean per-sale loss of B minus that of A on the same sales, with a 95 % interval from a
    block bootstrap: whole blocks (the sales of one day share the market's error of that day, so
    they are not independent) are drawn with replacement. An interval that holds 0 says the data
    cannot tell the two apart. Sales without a finite loss on either side are left out of both."""
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    gap = b[ok] - a[ok]
    if not len(gap):
        return {"n": 0, "blocks": 0}
    _, block_of = np.unique(np.asarray(blocks)[ok], return_inverse=True)
    gap_sums = np.bincount(block_of, weights=gap)
    sizes = np.bincount(block_of).astype(float)
    picks = np.random.default_rng(seed).integers(0, len(sizes), size=(draws, len(sizes)))
    resampled = gap_sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    lo, hi = np.quantile(resampled, [0.025, 0.975])
    return {"n": int(len(gap)), "blocks": int(len(sizes)), "difference": float(gap.mean()),
            "low": float(lo), "high": float(hi)}


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for missing/NaN/inf/non-numbers (thresholds never fire on those)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
