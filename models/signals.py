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
    deviation = _judged(market_price, fair_value)
    out = np.full(len(deviation), HOLD, dtype=object)
    out[deviation <= -buy_below] = BUY
    out[deviation >= sell_above] = SELL
    return out


def _judged(price, fair_value) -> np.ndarray:
    """price / fair value - 1 as the signals judge it: rounded to 12 decimals, so that a price
    exactly at a threshold counts (90/100 - 1 is not exactly -0.1); NaN when it is no number
    (no price, or a fair value of 0), which no threshold reads."""
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.round(np.asarray(price, dtype=float) / np.asarray(fair_value, dtype=float) - 1.0, 12)
    return np.where(np.isfinite(deviation), deviation, np.nan)


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
    and that price's deviation from the fair value, as answers have it (_answered; NaN and basis
    None: no market price, HOLD).

    The last sale is a market price while it is at most `max_age_days` old (a sale from a year
    ago says nothing about today's price). An open ask under the value by `buy_below` makes
    the item BUY whatever the sale says; an ask over it only says "do not buy" (no holder can sell
    at another's ask), so the sale's signal stands; with no recent sale the ask alone is read."""
    ask = np.asarray(ask_price, dtype=float)
    recent = np.where(np.asarray(last_sale_age_days, dtype=float) <= max_age_days,
                      np.asarray(last_price, dtype=float), np.nan)
    ask_deviation, sale_deviation = _judged(ask, fair_value), _judged(recent, fair_value)
    from_ask = ask_deviation <= -buy_below  # as signals() judges (NaN: no ask, no BUY)
    use_sale = ~from_ask & np.isfinite(recent)
    use_ask = ~use_sale & np.isfinite(ask)
    buy, sell = from_ask | (sale_deviation <= -buy_below), ~from_ask & (sale_deviation >= sell_above)
    signal = np.full(len(ask), HOLD, dtype=object)
    signal[buy], signal[sell] = BUY, SELL
    basis = np.where(use_sale, LAST_SALE, np.where(use_ask, ASK, None))
    deviation = np.where(use_sale, sale_deviation, np.where(use_ask, ask_deviation, np.nan))
    return signal, basis, _answered(deviation, buy, sell, use_sale, buy_below, sell_above)


# Answers give a deviation to this many decimals (fairvalue.answers.rounded's default), and each
# snapshot row records its signal's so (storage.tables.NowcastRow.deviation).
DEVIATION_DIGITS = 6


def _answered(deviation: np.ndarray, buy: np.ndarray, sell: np.ndarray, from_sale: np.ndarray, buy_below: float,
              sell_above: float) -> np.ndarray:
    """Each judged `deviation` (market_signals) to DEVIATION_DIGITS decimals: the nearest, unless
    that reads on the other side of a threshold than its signal (a HOLD at -0.0999996 is -0.1 to
    6 decimals, which reads as a BUY at 10 %); then the neighbour on the deviation's other side,
    which reads as the signal did. So an answer's signal and deviation always agree."""
    scale = 10.0 ** DEVIATION_DIGITS
    # The product's float noise off first (0.000249 * 1e6 is 248.99999999999997): floor and ceil read it.
    steps = np.round(deviation * scale, 12 - DEVIATION_DIGITS)
    nearest = np.round(steps)
    fits = agrees(nearest / scale, buy, sell, from_sale, buy_below, sell_above)
    other = np.where(nearest > steps, np.floor(steps), np.ceil(steps))
    # + 0.0 makes a -0.0 (a price a hair under the value) 0.0: a database stores -0.0 as 0.0, and the
    # archive rebuilt from the rows must hold the same bytes as the one written.
    return np.where(fits, nearest, other) / scale + 0.0


def agrees(deviation, buy, sell, from_sale, buy_below: float, sell_above: float) -> np.ndarray:
    """Whether each `deviation` reads on its signal's side of each threshold (a deviation written
    rounded, as an answer or a page writes it): a BUY's at or under -buy_below, a SELL's at or over
    sell_above; a HOLD read from the last sale between them, one read from an ask only above the
    buy one (an ask over the value makes no SELL)."""
    deviation = np.asarray(deviation, dtype=float)
    return np.where(buy, deviation <= -buy_below, np.where(
        sell, deviation >= sell_above, (deviation > -buy_below) & (~np.asarray(from_sale) | (deviation < sell_above))))


BELOW_BAND, IN_BAND, ABOVE_BAND = "below_band", "in_band", "above_band"


def band_position(price: float, p10: float, p90: float) -> str:
    """Where a price sits against the p10-p90 band, its ends counted in it."""
    if price < p10:
        return BELOW_BAND
    return ABOVE_BAND if price > p90 else IN_BAND
