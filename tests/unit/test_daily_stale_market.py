"""The cards market under the punks' stale-market rule (models.times.stale_limited): valued long after
its prices stop, it is valued a little after its last priced day, so its signals read the last
market known instead of every card being HOLD; the explanation's deviation is the signal's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.daily import valuation_moment
from models.signals import BUY, HOLD, SELL
from models.times import stale_limited
from tests.unit.test_daily_model import model, series  # noqa: F401  (the bundled fixture, a model before May)

LAST_DAY = pd.Timestamp("2025-07-19")  # the bundled prices' last day
YEARS_LATER = pd.Timestamp("2026-12-04 05:00")
THRESHOLDS = (0.10, 0.15, 30.0)  # buy_below, sell_above, signal_max_age_days


def test_the_rule_is_the_punks_own():
    last = pd.Timestamp("2025-07-20")
    assert stale_limited(YEARS_LATER, last, 7) == last + pd.Timedelta(days=7)
    assert stale_limited(last + pd.Timedelta(days=3), last, 7) == last + pd.Timedelta(days=3)  # not silent yet
    assert stale_limited(YEARS_LATER, last, 0) == stale_limited(YEARS_LATER, last, None) == YEARS_LATER
    assert stale_limited(YEARS_LATER, None, 7) == stale_limited(YEARS_LATER, pd.NaT, 7) == YEARS_LATER


def test_a_silent_cards_market_is_valued_a_limit_after_its_last_priced_day(series):  # noqa: F811
    # A day's price is known once the day is over: the last input is the end of the last priced day.
    assert valuation_moment(series, YEARS_LATER, 7) == LAST_DAY + pd.Timedelta(days=8)
    inside = pd.Timestamp("2025-06-01 10:00")
    assert valuation_moment(series, inside, 7) == inside  # a market that prices every day is valued when asked
    assert valuation_moment(series, YEARS_LATER, 0) == YEARS_LATER
    # Only prices before the asked moment count (an explanation finds the snapshot's moment again).
    asked = pd.Timestamp("2025-06-01")
    assert valuation_moment(series, asked, 7) == valuation_moment(series.before(asked), asked, 7) == asked


def test_valued_at_that_moment_the_cards_signal_and_the_explanation_agrees(series, model):  # noqa: F811
    moment = valuation_moment(series, YEARS_LATER, 7)
    now = model.value_at(series, YEARS_LATER, *THRESHOLDS)
    then = model.value_at(series, moment, *THRESHOLDS)
    assert set(now["signal"]) == {HOLD}  # every price is over 30 days old in December 2026
    assert {BUY, SELL} & set(then["signal"])  # the last market known signals
    assert now["signal_basis"].isna().all() and set(then["signal_basis"]) == {"last_sale"}
    signal = ["signal", "signal_basis", "deviation"]
    pd.testing.assert_frame_equal(now.drop(columns=signal), then.drop(columns=signal))  # the same values

    row = then.set_index("item_key").iloc[0]
    card = then["item_key"].iloc[0]
    explained = model.explain(series, card, moment, *THRESHOLDS)
    # The deviation the snapshot row records (to the 6 decimals answers have).
    assert explained["deviation"] == row["deviation"] == round(row["last_price"] / row["fair_value"] - 1, 6)
    # Explained at a moment its price is too old to signal, there is no deviation, as the item has none.
    assert model.explain(series, card, YEARS_LATER, *THRESHOLDS)["deviation"] is None
    assert np.isclose(model.explain(series, card, YEARS_LATER, *THRESHOLDS)["fair_value"], row["fair_value"])
