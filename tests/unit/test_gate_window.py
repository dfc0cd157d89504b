"""The gates' forward window: the last FAIRVALUE_GATE_WINDOW_DAYS of sales, widened back to hold
the eval_n check's sales when a quiet market traded less in those days (models.gates.window_start).
Before, every contender of a market that went quiet was rejected on "eval_n" until it traded again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import storage.tables  # noqa: F401  (registers the tables)
from fairvalue.lifecycle import gating
from fairvalue.settings import Settings
from models import gates
from tests.builders import sessions_on
from tests.unit.test_features import synthetic_market

LAST = pd.Timestamp("2021-06-30 12:00")


def daily_sales(n_days: int, per_day: int = 1) -> pd.Series:
    days = pd.date_range(end=LAST, periods=n_days, freq="D")
    return pd.Series(days.repeat(per_day))


def test_a_busy_market_keeps_its_calendar_days():
    # 10 sales a day: the 14 days before the last sale hold 141 of them, more than 50.
    assert gates.window_start(daily_sales(60, per_day=10), 14, 50, keep_before=50) == (LAST - pd.Timedelta(days=14),
                                                                                       False)


def test_a_quiet_market_s_window_reaches_back_to_its_fiftieth_newest_sale():
    times = daily_sales(200)  # one sale a day: the 14 days hold 15
    start, widened = gates.window_start(times, 14, 50, keep_before=50)
    assert start == LAST - pd.Timedelta(days=49) and widened
    assert (times >= start).sum() == 50 and (times < start).sum() == 150


def test_the_window_leaves_the_sales_a_fit_needs_before_it():
    times = daily_sales(80)  # widened to 50 sales, only 30 would be left to fit on
    start, widened = gates.window_start(times, 14, 50, keep_before=50)
    assert (times < start).sum() == 50 and (times >= start).sum() == 30 and widened


def test_a_young_market_keeps_its_calendar_days_rather_than_shrink_them():
    times = daily_sales(60)  # widening would leave fewer than 50 before; the calendar window stays
    assert gates.window_start(times, 14, 50, keep_before=50) == (LAST - pd.Timedelta(days=14), False)


def test_a_window_of_fractional_days_and_too_few_sales_for_the_minimum():
    times = daily_sales(20)
    assert gates.window_start(times, 0.5, 50) == (times.min(), True)  # no fit to keep: every sale is scored
    assert gates.window_start(times, 0.5, 1) == (LAST - pd.Timedelta(hours=12), False)


@pytest.fixture
def quiet_market(memory_engine, monkeypatch):
    """A synthetic market whose last 14 days hold fewer than 50 sales, served to train_and_gate."""
    data = synthetic_market(n_sales=250, seed=3)
    data.sales["ts"] = data.sales["ts"].dt.floor("us")  # as the database keeps them
    monkeypatch.setattr(gating, "load_market_data", lambda session, coll: data)
    sessions_on(monkeypatch, gating, memory_engine)
    return data


def test_train_and_gate_scores_a_quiet_market_on_enough_sales(quiet_market, tmp_path):
    settings = Settings(artifacts_url=f"file://{tmp_path}/artifacts", train_max_iter=20, learning_curve_splits=1)
    last = quiet_market.sales["ts"].max()
    assert (quiet_market.sales["ts"] >= last - pd.Timedelta(days=14)).sum() < 50

    outcome = gating.train_and_gate(settings, {})

    window = outcome.numbers["window"]
    assert window["n_sales"] >= 50 and window["days"] == 14 and window["widened_to_min_sales"] == 50
    eval_n = next(c for c in outcome.decision.checks if c["name"] == "eval_n")
    assert eval_n["passed"], eval_n
    assert outcome.numbers["contender"]["n"] == window["n_sales"]
    # The version's learning curve ends on the gates' window, the contender's fit reused as its full point.
    assert [p["fraction"] for p in outcome.learning_curve["learning_curve"]] == [0.25, 0.5, 1.0]
    assert outcome.learning_curve["learning_curve_split_starts"] == [window["from"]]


def test_no_learning_curve_leaves_the_holdout_scored_and_its_keys_out():
    """FAIRVALUE_LEARNING_CURVE_SPLITS=0: the holdout's own fit only (what the tests' workers run)."""
    from fairvalue import pipeline
    from models.estimator import TrainParams

    data = synthetic_market(n_sales=250, seed=3)
    start = data.sales["ts"].max().floor("D") - pd.Timedelta(days=30)
    metrics, diagnostics = pipeline.holdout_evaluation(data, start, TrainParams(max_iter=10), curve_splits=0)

    assert metrics["model"]["n"] == (data.sales["ts"] >= start).sum() > 0
    assert "learning_curve" not in metrics and "learning_curve_split_starts" not in metrics
    assert diagnostics.learning_curve is None and "<img" in diagnostics.to_html("no curve")


def test_both_models_are_banded_by_the_same_values_so_a_band_holds_the_same_sales():
    """Each model's price bands were of its own values: the contender's "50-100" and the champion's
    held other sales, and a contender closer on every sale could fail a band it was never
    compared on. train_and_gate bands both by the champion's values."""
    from models.estimator import TrainParams, fit

    data = synthetic_market(n_sales=300, seed=5)
    start = data.sales["ts"].max().floor("D") - pd.Timedelta(days=20)
    window = data.sales[data.sales["ts"] >= start].reset_index(drop=True)
    queries = pd.DataFrame({"item_key": window["item_key"], "ts": window["ts"].dt.normalize().clip(lower=start)})
    past = data.before(start)
    champion, champion_fair = gating._evaluation("champion", fit(past, TrainParams(max_iter=10)), data, queries,
                                                 window)
    contender, _ = gating._evaluation("contender", fit(past, TrainParams(max_iter=30, learning_rate=0.2)), data,
                                      queries, window, band_basis=champion_fair)
    bands = [evaluation.segments[evaluation.segments["segment"] == "price_band"].set_index("value")["n"]
             for evaluation in (champion, contender)]
    pd.testing.assert_series_equal(bands[0], bands[1])
    assert bands[0].sum() == len(window)


def test_a_learning_curve_fraction_trains_on_its_rows_with_features_of_the_whole_market():
    """The 25 % and 50 % points trained on a market cut at their first sale: their rows had no last
    sale, no comparables and no hedonic fit before it, which a nowcast's features have."""
    from models.estimator import training_frame
    from models.features import MarketData, TraitVocabulary

    data = synthetic_market(n_sales=300, seed=4)
    vocab = TraitVocabulary(data.items)
    rows_from = data.sales["ts"].quantile(0.75)
    whole, whole_target, whole_times = training_frame(data, vocab)
    recent, recent_target, recent_times = training_frame(data, vocab, rows_from)
    tail = whole_times >= rows_from
    assert 0 < len(recent) == tail.sum() < len(whole)
    pd.testing.assert_frame_equal(recent, whole[tail].reset_index(drop=True))
    np.testing.assert_array_equal(recent_target, whole_target[tail])
    cut = MarketData(data.items, data.sales[data.sales["ts"] >= rows_from], data.market)
    no_last_sale = training_frame(cut, vocab)[0]["last_sale_log_premium"].isna().sum()
    assert no_last_sale > recent["last_sale_log_premium"].isna().sum()
