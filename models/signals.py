"""BUY / SELL / HOLD from how far a market price strays from fair value."""

from __future__ import annotations

import numpy as np

BUY, SELL, HOLD = "BUY", "SELL", "HOLD"


def signals(
    market_price: np.ndarray,
    fair_value: np.ndarray,
    buy_below: float = 0.10,
    sell_above: float = 0.15,
) -> np.ndarray:
    """BUY when the market price is at least `buy_below` under fair value, SELL when at least
    `sell_above` over it, HOLD otherwise or when there is no market price."""
    price = np.asarray(market_price, dtype=float)
    fair = np.asarray(fair_value, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Rounded so that a price exactly at a threshold counts (90/100 - 1 is not exactly -0.1).
        deviation = np.round(price / fair - 1.0, 12)
    out = np.full(len(price), HOLD, dtype=object)
    out[np.isfinite(deviation) & (deviation <= -buy_below)] = BUY
    out[np.isfinite(deviation) & (deviation >= sell_above)] = SELL
    return out


BELOW_BAND, IN_BAND, ABOVE_BAND = "below_band", "in_band", "above_band"


def band_position(price: float, p10: float, p90: float) -> str:
    """Where a price sits against the p10-p90 band, its ends counted in it."""
    if price < p10:
        return BELOW_BAND
    return ABOVE_BAND if price > p90 else IN_BAND
