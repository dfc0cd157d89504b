"""Training the daily (cards) model on prices with a gap: the bundled prices end in July 2025 and a
collector's first run stores one price per card months later. Training reads its tuning and band
windows on priced days, so the gap neither crashes it nor changes what it tunes on; data that
cannot train a model is a typed refusal (TooFewPrices), not a bare ValueError."""

from __future__ import annotations

import pandas as pd
import pytest

from models.daily import DailyParams, DailySeries, TooFewPrices, fit
from tests.unit.test_daily_model import series  # noqa: F401  (the bundled fixture as a DailySeries)

LATER = pd.Timestamp("2026-12-01")


def with_a_day_after_a_gap(prices: DailySeries) -> DailySeries:
    """The series plus one price per card on LATER (each card's last price again), as `fairvalue
    cards collect` stores after the bundled prices."""
    later = prices.prices.groupby("item_key").tail(1).assign(day=LATER)
    return DailySeries(prices.items, pd.concat([prices.prices, later], ignore_index=True))


def test_a_gap_before_the_last_day_tunes_on_the_last_priced_days(series):  # noqa: F811
    gapped = with_a_day_after_a_gap(series)
    model = fit(gapped)  # with a calendar window: "too few priced days after warm-up" (only LATER in it)
    # The last 60 priced days are LATER (no card has a fair value on it: its window is empty) and the
    # last 59 bundled days, so the tuning is exactly that of the bundled prices on 59 days.
    bundled = fit(series, DailyParams(tune_days=59))
    assert model.tuning == bundled.tuning and (model.window, model.alpha) == (bundled.window, bundled.alpha)
    assert all(lo < 0 < hi for lo, hi in model.band.values())  # fitted on the bundled days, not NaN


def test_without_a_gap_priced_days_are_calendar_days(series):  # noqa: F811
    """Every day of the fixture has a price: the last 60 priced days are the last 60 calendar days."""
    days = series.prices["day"].drop_duplicates()
    assert len(days) == (days.max() - days.min()).days + 1
    model = fit(series)
    cut = series.prices["day"].max() - pd.Timedelta(days=60)
    n_calendar = max(row["n"] for row in model.tuning)
    assert n_calendar == ((series.prices["day"] > cut).sum())  # alpha and W: all rows of the window valued


def test_prices_that_cannot_train_are_a_typed_refusal(series):  # noqa: F811
    few_days = DailySeries(series.items, series.prices[series.prices["day"] < pd.Timestamp("2025-01-10")])
    with pytest.raises(TooFewPrices, match="only 9 days of prices; a daily model needs at least 14"):
        fit(few_days)
    with pytest.raises(TooFewPrices, match="only 0 days"):
        fit(DailySeries(series.items, series.prices.iloc[:0]))
    short = DailySeries(series.items, series.prices[series.prices["day"] < pd.Timestamp("2025-01-16")])
    with pytest.raises(TooFewPrices, match="too few card-days with a fair value in the last 60 priced days"):
        fit(short, DailyParams(min_band_rows=10_000))
    # A band window of priced days that holds no fair value (only the day after the gap) is refused,
    # not fitted to NaN quantiles.
    with pytest.raises(TooFewPrices, match="no card-day with a fair value in the last 1 priced days"):
        fit(with_a_day_after_a_gap(series), DailyParams(band_days=1))
