"""Forward error metrics, one module for training, replay, gates and the API."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def valuation_metrics(predicted: np.ndarray, actual: np.ndarray,
                      p10: np.ndarray | None = None, p90: np.ndarray | None = None) -> dict[str, float | int]:
    predicted = np.asarray(predicted, dtype=float)
    actual = np.asarray(actual, dtype=float)
    ok = np.isfinite(predicted) & np.isfinite(actual) & (actual > 0)
    n = int(ok.sum())
    if n == 0:
        return {"n": 0}
    pred, act = predicted[ok], actual[ok]
    rel = (pred - act) / act
    ape = np.abs(rel)
    out: dict[str, float | int] = {
        "n": n,
        "n_filtered": int(len(actual) - n),
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "bias": float(np.median(rel)),
        "rmse": float(np.sqrt(np.mean((pred - act) ** 2))),
        "within_10pct": float((ape <= 0.10).mean()),
        "within_25pct": float((ape <= 0.25).mean()),
    }
    if p10 is not None and p90 is not None:
        lo, hi = np.asarray(p10, dtype=float)[ok], np.asarray(p90, dtype=float)[ok]
        out["band_coverage"] = float(((act >= lo) & (act <= hi)).mean())
    return out



def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for missing/NaN/inf/non-numbers (thresholds never fire on those)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
