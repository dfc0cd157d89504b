"""The forward windows of a daily (cards) market after a gap in its prices: a version's holdout
and the gates' window are the last N priced days, by the rule training tunes on
(models.daily.last_priced_days_start), so one price per card stored 500 days after the bundled
prices neither empties the holdout (n=0) nor has the gates reject every request with "eval_n 0".
Without a gap they are the calendar days they were."""

from __future__ import annotations

import pandas as pd

from fairvalue import kinds
from fairvalue.settings import Settings
from models import gates
from models.daily import DailySeries, fit, last_priced_days_start
from tests.unit.test_daily_model import series  # noqa: F401  (the bundled fixture as a DailySeries)

LAST_BUNDLED = pd.Timestamp("2025-07-19")
LATER = LAST_BUNDLED + pd.Timedelta(days=500)


def with_a_day_after_a_gap(prices: DailySeries) -> DailySeries:
    """The series plus one price per card 500 days after its last day (each card's last price
    again), as `fairvalue cards collect` stores after the bundled prices."""
    later = prices.prices.groupby("item_key").tail(1).assign(day=LATER)
    return DailySeries(prices.items, pd.concat([prices.prices, later], ignore_index=True))


def synthetic(days: list[str]) -> DailySeries:
    items = pd.DataFrame({"item_key": ["a"], "category": ["grail"], "active": [True]}).set_index("item_key")
    return DailySeries(items, pd.DataFrame({"day": pd.to_datetime(days), "item_key": "a", "price": 1.0,
                                            "volume": None}))


def test_the_last_priced_days_start_after_the_priced_day_before_them():
    gapped = synthetic(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2026-06-01"])
    # The last 2 priced days are 01-04 and 2026-06-01: they start the day after 01-03.
    start = last_priced_days_start(gapped, 2)
    assert start == pd.Timestamp("2025-01-04")
    assert sorted(gapped.prices.loc[gapped.prices["day"] >= start, "day"].dt.strftime("%Y-%m-%d")) == [
        "2025-01-04", "2026-06-01"]
    assert gapped.before(start).prices["day"].max() == pd.Timestamp("2025-01-03")
    # The calendar rule (last day - n + 1) would have started on 2026-05-31: one day in the window.
    assert last_priced_days_start(gapped, 1) == pd.Timestamp("2025-01-05")
    # No more priced days than asked: all of them, nothing before.
    assert last_priced_days_start(gapped, 5) == last_priced_days_start(gapped, 9) == pd.Timestamp("2025-01-01")
    # Without a gap, the calendar rule's day.
    plain = synthetic([f"2025-01-{d:02d}" for d in range(1, 11)])
    assert all(last_priced_days_start(plain, n) == pd.Timestamp("2025-01-10") - pd.Timedelta(days=n - 1)
               for n in range(1, 11))


def test_the_holdout_after_a_gap_scores_the_last_priced_days(series):  # noqa: F811
    holdout = kinds.holdout_daily(with_a_day_after_a_gap(series), 30)
    # The last 31 priced days: 30 bundled days and LATER (which no card has a fair value on yet).
    # With the calendar window (LATER - 30 days) it held LATER alone: "n": 0.
    assert holdout["holdout_start"] == "2025-06-20T00:00:00Z"
    assert holdout["model"]["n"] > 1000 and holdout["per_category"]
    # The same fit (on the prices before 06-20) and the same card-days as the bundled prices' last 30.
    assert holdout["model"] == kinds.holdout_daily(series, 29)["model"]


def test_without_a_gap_the_holdout_is_the_calendar_one(series):  # noqa: F811
    holdout = kinds.holdout_daily(series, 30)
    # last day - 30 days, as the calendar rule had it; the figures `train` reported before the change.
    assert holdout["holdout_start"] == "2025-06-19T00:00:00Z"
    assert (holdout["model"]["n"], round(holdout["model"]["mape"], 6)) == (1215, 0.033463)


def test_the_gates_window_after_a_gap_scores_card_days(series):  # noqa: F811
    """The gates' window of a training request, as fairvalue.lifecycle builds it."""
    data, settings = with_a_day_after_a_gap(series), Settings(_env_file=None)
    start = last_priced_days_start(data, settings.gate_window_days)
    assert start == LAST_BUNDLED - pd.Timedelta(days=settings.gate_window_days - 2)  # 13 bundled days + LATER
    contender, rows = kinds.DAILY.evaluation("contender", fit(data.before(start)), data, start)
    decision = gates.decide(contender, None, kinds.DAILY.baseline(data, rows), kinds.DAILY.gate_config(settings))
    eval_n = next(c for c in decision.checks if c["name"] == "eval_n")
    assert eval_n["passed"] and eval_n["value"] == contender.metrics["n"] > 0
    assert eval_n["detail"] == f"{eval_n['value']} usable card-day prices in the evaluation window"
