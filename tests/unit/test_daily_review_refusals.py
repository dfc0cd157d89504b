"""A review of the cards (daily-priced) paths: a replay whose retrain tick has too few card-days to
tune on, a card back after a gap in its prices, a window too short to train with, a collector run
that collected nothing, a --to inside a day and a fractional --horizon. Each was a traceback, a
silent stand-in or a silent truncation; each is now a refusal that says why, or the right day."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fairvalue import evaluation, kinds
from fairvalue.card_prices import CollectReport
from fairvalue.cli import app
from fairvalue.settings import get_settings
from models.daily import DailyFairValueModel, DailyParams, DailySeries, fit
from storage.prices import PriceReport

runner = CliRunner()
FIRST = pd.Timestamp("2025-01-01")


def said(text: str) -> str:
    """On one line (rich wraps at the terminal's width)."""
    return " ".join(text.replace("│", " ").split())


def two_cards(days: int = 30) -> DailySeries:
    """Two cards priced every day from 2025-01-01, as /tmp/review_cards/small.csv: 14 priced days
    are there before 2025-01-15, but far fewer than 50 card-days with a fair value to tune on."""
    keys = ["base1-2-blastoise-holo", "base1-4-charizard-holo"]
    items = pd.DataFrame({"category": "grail", "active": True}, index=pd.Index(keys, name="item_key"))
    day = pd.date_range(FIRST, periods=days, freq="D")
    prices = pd.DataFrame({"day": np.repeat(day, 2), "item_key": keys * days,
                           "price": [p for k in range(days) for p in (2000.0 + 10 * k, 1000.0 + 5 * k)],
                           "volume": 1})
    return DailySeries(items, prices)


# --- 1. a retrain tick with too few card-days to tune on -------------------------------------

def test_a_replay_whose_training_cannot_tune_is_refused_not_raised():
    """TooFewPrices escaped replay_daily: a traceback from the CLI, a 500 from the API (both catch
    NotEnoughHistory only)."""
    series, settings = two_cards(), get_settings().for_collection("cards")
    start, end = pd.Timestamp("2025-01-20"), pd.Timestamp("2025-01-30")
    for run in (lambda: evaluation.evaluate_daily(series, start, end, settings),
                lambda: evaluation.backtest_daily(series, start, end, settings)):
        with pytest.raises(evaluation.NotEnoughHistory) as refused:
            run()
        assert str(refused.value).startswith("not enough prices before the window to train a model: the model of "
                                             "2025-01-20, trained on the days before it: too few card-days with a "
                                             "fair value in the last 60 priced days to tune on")


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_the_cli_refuses_such_a_window_as_a_bad_from(monkeypatch, command):
    monkeypatch.setattr(evaluation, "load_daily", lambda settings, source: two_cards())
    result = runner.invoke(app, [command, "--collection", "cards", "--source", "bundled", "--from", "2025-01-20",
                                 "--to", "2025-01-30"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Invalid value for --from: not enough prices before the window to train a model: the model of " \
           "2025-01-20" in said(result.output), result.output


# --- 2. a card back after a gap: its latest day has no fair value yet ------------------------

def with_a_gap(card: str) -> DailySeries:
    """Three cards priced daily 2025-01-01..02-09; `card` has no price 01-20..02-03 (back on 02-04)."""
    keys = ["a", "b", "c"]
    items = pd.DataFrame({"category": "chase", "active": True}, index=pd.Index(keys, name="item_key"))
    day = pd.date_range(FIRST, periods=40, freq="D")
    rng = np.random.default_rng(3)
    prices = pd.DataFrame({"day": np.repeat(day, 3), "item_key": keys * 40,
                           "price": 100 * np.exp(rng.normal(0, 0.02, 120)), "volume": 1})
    gap = (prices["item_key"] == card) & (prices["day"] >= "2025-01-20") & (prices["day"] < "2025-02-04")
    return DailySeries(items, prices[~gap].reset_index(drop=True))


def test_a_card_whose_latest_day_has_no_fair_value_is_left_out_not_valued_at_an_older_day():
    """Back on 02-04 after a gap, card b's window of 7 days before its latest day 02-05 holds one
    price (02-04): no fair value. Its value and price of 01-19 were published as current."""
    series = with_a_gap("b")
    model = DailyFairValueModel(window=7, alpha=0.5, band={"*": (-1.0, 1.0)})
    valued = model.value_at(series, pd.Timestamp("2025-02-06T12:00"), 0.10, 0.15, 30).set_index("item_key")
    assert list(valued.index) == ["a", "c"]
    assert (valued["last_sale_at"] == pd.Timestamp("2025-02-05")).all()
    with pytest.raises(LookupError, match="b has too short a price history"):
        model.explain(series, "b", pd.Timestamp("2025-02-06T12:00"), 0.10, 0.15, 30)
    # Three prices back (02-04..02-06) before 02-07: valued again, for its own latest day.
    later = model.value_at(series, pd.Timestamp("2025-02-08T12:00"), 0.10, 0.15, 30).set_index("item_key")
    assert list(later.index) == ["a", "b", "c"]
    assert later.loc["b", "last_sale_at"] == pd.Timestamp("2025-02-07")
    price = series.prices.set_index(["item_key", "day"])["price"]
    assert later.loc["b", "last_price"] == pytest.approx(price[("b", pd.Timestamp("2025-02-07"))])
    assert model.explain(series, "b", pd.Timestamp("2025-02-08T12:00"), 0.10, 0.15, 30)["valued_day"] == "2025-02-07"


# --- 3. a window too short for any training ---------------------------------------------------

@pytest.mark.parametrize("windows", [[2], [1], [7, 2]])
def test_a_window_under_three_days_is_refused_where_the_params_are_checked(windows):
    """`retrain --param 'windows=[2]'` was queued, then every training failed (min_periods 3 above a
    window of 2): the operator path checks params with kinds.DAILY.params, which refuses it now."""
    from fairvalue import lifecycle
    from storage.tables import Collection

    with pytest.raises(ValidationError, match="too short: a window of fewer than 3 days cannot hold the 3 prices"):
        kinds.DAILY.params({"windows": windows})
    with pytest.raises(lifecycle.BadTrainingParams) as refused:
        lifecycle.check_training_params(Collection(slug="cards", kind="daily_prices"), get_settings(),
                                        {"windows": windows})
    bad = windows.index(min(windows))
    assert str(refused.value) == (f"windows.{bad}: Value error, {min(windows)} is too short: a window of fewer than "
                                  "3 days cannot hold the 3 prices a card's median needs")


def test_the_shortest_window_allowed_trains():
    model = fit(with_a_gap("b"), DailyParams(windows=(3,), min_band_rows=10))
    assert model.window == 3


# --- 4. a collector run that collected nothing --------------------------------------------------

@pytest.mark.parametrize(("report", "code", "why"), [
    (CollectReport("cards", skipped="no FAIRVALUE_CARD_PRICE_API_KEY configured"), 1,
     "nothing collected: no FAIRVALUE_CARD_PRICE_API_KEY configured"),
    (CollectReport("cards", cards=2, cards_failed={"a": "http_404", "b": "timeout"}), 1,
     "nothing collected: every card asked for failed (2; reasons in cards_failed)"),
    (CollectReport("cards", cards=2, cards_failed={"a": "http_404"}, prices=PriceReport(unchanged=5)), 0, ""),
], ids=["skipped", "every-card-failed", "one-card-failed"])
def test_cards_collect_exits_1_when_it_collected_nothing(monkeypatch, report, code, why):
    """It exited 0 when every card failed or the run was skipped for want of an API key."""
    from fairvalue import card_prices

    monkeypatch.setattr(card_prices, "collect", lambda settings, days=None: report)
    result = runner.invoke(app, ["cards", "collect"])
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout) == {**report.as_dict(), "follow_up": "none"}  # the report, as before
    assert said(result.stderr) == why


# --- 5. a --to inside a day ---------------------------------------------------------------------

def test_a_to_inside_a_day_takes_that_day_in_and_a_bare_date_to_stays_exclusive():
    from fairvalue.cli.replays import _day_window

    day = pd.Timestamp
    assert _day_window("2025-07-01", "2025-07-10T12:00") == (day("2025-07-01"), day("2025-07-11"))
    assert _day_window("2025-07-01T00:00", "2025-07-01T12:00") == (day("2025-07-01"), day("2025-07-02"))
    assert _day_window("2025-07-01T18:00", "2025-07-10") == (day("2025-07-01"), day("2025-07-10"))  # --help: exclusive
    assert _day_window("2025-07-10T01:00+02:00", "2025-07-10T23:30-01:00") == (day("2025-07-09"), day("2025-07-12"))


def test_a_window_of_part_of_one_day_is_backtested_not_refused():
    result = runner.invoke(app, ["backtest", "--collection", "cards", "--source", "bundled", "--json",
                                 "--from", "2025-07-01T00:00", "--to", "2025-07-01T12:00"])
    assert result.exit_code == 0, result.output
    backtest = json.loads(result.stdout)["backtest"]
    assert backtest["n_rows"] > 0 and backtest["start"] == backtest["end"] == "2025-07-02"  # 07-01 held to 07-02


# --- 6. a horizon that is not whole days ---------------------------------------------------------

def test_a_fractional_horizon_is_refused_not_truncated():
    """--horizon 1.9 was judged over 1 day."""
    result = runner.invoke(app, ["replay", "--collection", "cards", "--source", "bundled", "--from", "2025-07-01",
                                 "--to", "2025-07-05", "--horizon", "1.9"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Invalid value for --horizon: must be a whole number of days (1-90), got 1.9" in said(result.output)
    with pytest.raises(ValueError, match="horizon_days must be a whole number of days, got 1.9"):
        evaluation.evaluate_daily(two_cards(), pd.Timestamp("2025-01-20"), pd.Timestamp("2025-01-30"),
                                  get_settings().for_collection("cards"), horizon_days=1.9)
