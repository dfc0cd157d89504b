"""A realistic, seeded daily price series for a card universe (the test and demo fixture).

Real card prices are not ours to bundle, so the fixture is generated. What it imitates, and why
each part is there (each one is something the daily model and its KPIs must cope with):

- Category factors. Each category (grail, chase, meta, personal) follows its own log random walk
  whose drift and volatility switch between regimes (calm, bull, bear) at random days: a model
  that ignores its category misses market-wide moves.
- Card beta and premium. Every card moves with its category by a beta in [0.6, 1.4] and has its
  own price level (a lognormal per category: grails in the thousands, meta cards in dollars),
  plus a mean-reverting idiosyncratic component (an AR(1) in logs) and daily noise.
- Spikes. Now and then a card jumps 25-90 % (a streamer opens one, a tournament win) and decays
  back with a half-life of 1-5 days: a fair value that follows such a day is wrong, and a SELL on
  the spike is right.
- Card regime changes. Rarer permanent moves of -40 %..+50 % (a reprint announced, a card banned
  or a new meta): the level shifts for good, and a robust fair value has to follow within days.
- Volume. Sales per day, Poisson around a level per category (meta cards trade most), more on
  spike days.
- Gaps. About 2 % of card-days are missing, as from a price source that misses days.

`generate` is pure (numpy Generator seeded by `seed`): the same arguments give the same rows.
`fairvalue cards fixture` writes it as CSV (date, card_id, market_price, volume); the committed
data/cards/prices.csv is `fairvalue cards fixture --days 200 --seed 7 --start 2025-01-01`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Median price (USD) and log-sd of card levels, typical daily volume, per category.
LEVELS = {"grail": (1500.0, 0.8, 2.0), "chase": (250.0, 0.6, 8.0), "meta": (15.0, 0.6, 40.0),
          "personal": (60.0, 0.8, 5.0)}
# Regimes of a category factor: (daily drift, daily volatility).
REGIMES = {"calm": (0.0, 0.006), "bull": (0.004, 0.012), "bear": (-0.004, 0.012)}


@dataclass
class Fixture:
    prices: pd.DataFrame  # date, card_id, market_price, volume
    events: pd.DataFrame  # date, card_id (or category), kind, size: what was injected, for docs and tests


def _category_factor(rng: np.random.Generator, days: int, name: str, events: list) -> np.ndarray:
    names = list(REGIMES)
    log_level = np.zeros(days)
    regime = "calm"
    day = 0
    while day < days:
        length = int(rng.integers(30, 90))
        drift, vol = REGIMES[regime]
        end = min(days, day + length)
        steps = drift + vol * rng.standard_normal(end - day)
        log_level[day:end] = steps
        day = end
        if day < days:
            regime = names[int(rng.integers(len(names)))]
            events.append((day, name, f"category regime: {regime}", 0.0))
    return np.cumsum(log_level)


def _event_day(rng: np.random.Generator, earliest: int, days: int) -> int:
    """The day an injected event starts: from `earliest` on (history before it to move from), or on
    the last day of a series shorter than that (`integers(20, 5)` failed for --days 2..20). The
    draw is the same as before wherever the series is long enough, so the committed fixture stands."""
    return int(rng.integers(min(earliest, days - 1), days))


def generate(cards: Sequence[tuple[str, str]], days: int = 200, seed: int = 7,
             start: str | pd.Timestamp = "2025-01-01", missing_share: float = 0.02) -> Fixture:
    """Daily prices for `cards` given as (card_id, category) pairs; see the module docstring."""
    if days < 2:
        raise ValueError("days must be at least 2")
    rng = np.random.default_rng(seed)
    dates = pd.date_range(pd.Timestamp(start).normalize(), periods=days, freq="D")
    events: list[tuple[int, str, str, float]] = []
    categories = sorted({c for _, c in cards})
    unknown = set(categories) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {sorted(LEVELS)}")
    market = np.cumsum(0.004 * rng.standard_normal(days))  # what moves every category a little
    factors = {c: market + _category_factor(rng, days, c, events) for c in categories}

    frames = []
    for card_id, category in cards:
        median, spread, volume_level = LEVELS[category]
        level = np.log(median) + spread * rng.standard_normal()
        beta = rng.uniform(0.6, 1.4)
        noise_sd = rng.uniform(0.008, 0.025)
        # Idiosyncratic AR(1) in logs: wanders but comes back.
        idio = np.zeros(days)
        shocks = 0.01 * rng.standard_normal(days)
        for t in range(1, days):
            idio[t] = 0.97 * idio[t - 1] + shocks[t]
        log_price = level + beta * factors[category] + idio + noise_sd * rng.standard_normal(days)

        spike = np.zeros(days)
        for _ in range(rng.poisson(days / 120)):
            day = _event_day(rng, 5, days)
            size = rng.uniform(0.25, 0.9)
            half_life = rng.uniform(1.0, 5.0)
            spike[day:] += np.log1p(size) * 0.5 ** (np.arange(days - day) / half_life)
            events.append((day, card_id, "spike", round(size, 3)))
        shift = np.zeros(days)
        if rng.random() < 0.35:
            day = _event_day(rng, 20, days)
            size = rng.choice([rng.uniform(-0.4, -0.15), rng.uniform(0.15, 0.5)])
            shift[day:] = np.log1p(size)
            events.append((day, card_id, "card regime change", round(float(size), 3)))
        log_price = log_price + spike + shift

        volume = rng.poisson(volume_level * (1 + 3 * spike))
        frames.append(pd.DataFrame({"date": dates, "card_id": card_id,
                                    "market_price": np.round(np.exp(log_price), 2), "volume": volume}))
    prices = pd.concat(frames, ignore_index=True)
    keep = rng.random(len(prices)) >= missing_share
    keep[prices["date"] == dates[0]] = True  # every card has a first price
    prices = prices[keep].sort_values(["date", "card_id"], kind="stable").reset_index(drop=True)
    prices["date"] = prices["date"].dt.strftime("%Y-%m-%d")
    log = pd.DataFrame(events, columns=["day", "subject", "kind", "size"])
    log.insert(0, "date", dates[log["day"].to_numpy()].strftime("%Y-%m-%d") if len(log) else [])
    return Fixture(prices, log.drop(columns="day").sort_values(["date", "subject"]).reset_index(drop=True))
