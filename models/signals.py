"""BUY / SELL / HOLD from how far a market price strays from fair value."""

from __future__ import annotations

import numpy as np

BUY, SELL, HOLD = "BUY", "SELL", "HOLD"
SIGNALS = (BUY, SELL, HOLD)


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


# Which price a published signal was read from (market_signals): an open ask, or the last sale.
ASK, LAST_SALE = "ask", "last_sale"


def market_signals(
    ask_price: np.ndarray,
    last_price: np.ndarray,
    last_sale_age_days: np.ndarray,
    fair_value: np.ndarray,
    buy_below: float,
    sell_above: float,
    max_age_days: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signal, basis, deviation) per item: the published signal, the price it was read from
    and that price's deviation from the fair value (NaN and basis None: no market price, HOLD).

    The last sale is a market price while it is at most `max_age_days` old (a sale from a year
    ago says nothing about today's price). An open ask under the value by `buy_below` makes
    the item BUY whatever the sale says; an ask over it only says "do not buy" (no holder can sell
    at another's ask), so the sale's signal stands; with no recent sale the ask alone is read."""
    ask = np.asarray(ask_price, dtype=float)
    last = np.asarray(last_price, dtype=float)
    fair = np.asarray(fair_value, dtype=float)
    recent = np.where(np.asarray(last_sale_age_days, dtype=float) <= max_age_days, last, np.nan)
    from_ask = signals(ask, fair, buy_below, sell_above) == BUY
    use_sale = ~from_ask & np.isfinite(recent)
    use_ask = ~use_sale & np.isfinite(ask)
    price = np.where(use_sale, recent, np.where(use_ask, ask, np.nan))
    basis = np.where(use_sale, LAST_SALE, np.where(use_ask, ASK, None))
    signal = np.where(from_ask, BUY, signals(recent, fair, buy_below, sell_above))
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = price / fair - 1.0
    return signal, basis, deviation


BELOW_BAND, IN_BAND, ABOVE_BAND = "below_band", "in_band", "above_band"


def band_position(price: float, p10: float, p90: float) -> str:
    """Where a price sits against the p10-p90 band, its ends counted in it."""
    if price < p10:
        return BELOW_BAND
    return ABOVE_BAND if price > p90 else IN_BAND
