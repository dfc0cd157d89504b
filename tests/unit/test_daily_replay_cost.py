"""What a cards replay (/performance, /backtest) computes: a 60-day window took ~3 s of CPU (~5 s on a
busy host) for each new window, most of it the same matrices computed again at every weekly
retrain. The rows must stay what a replay computed without sharing, bit for bit."""

from __future__ import annotations

import pandas as pd
import pytest

from models import daily
from models.daily import DailyFairValueModel, DailySeries, fit, matrices
from models.daily_eval import DailyReplayConfig, replay_daily
from models.metrics import valuation_metrics
from models.signals import signals
from tests.unit.test_daily_model import series  # noqa: F401  (the bundled prices, as a fixture)

START, END = pd.Timestamp("2025-05-21"), pd.Timestamp("2025-07-20")


def test_a_replay_computes_the_category_index_once_per_training_and_model(series, monkeypatch):  # noqa: F811
    """Each retrain tick computed the log prices and the category index seven times (once per
    tuned window, once for the chosen model's matrices, once more to value the week); now once to
    tune, and once per distinct (window, alpha) for the whole replay."""
    calls = []

    def counted(log_price, categories):
        calls.append(len(log_price))
        return category_index(log_price, categories)

    category_index = daily.category_index
    monkeypatch.setattr(daily, "category_index", counted)
    rows, trainings = replay_daily(series, DailyReplayConfig(START, END))
    assert len(trainings) == 9 and len(rows) > 2000
    models = {(t["window"], t["alpha"]) for t in trainings}
    assert len(calls) <= len(trainings) + len(models), (len(calls), len(trainings), models)


def test_a_replay_values_each_week_as_its_model_alone_would(series):  # noqa: F811
    """Shared matrices change no number: every tick's model, fitted and valuing on its own cut of
    the series, gives the replay's rows exactly (not within a tolerance)."""
    rows, trainings = replay_daily(series, DailyReplayConfig(START, END))
    ticks = [t["trained_at"] for t in trainings] + [END]
    alone = []
    for k, tick in enumerate(ticks[:-1]):
        model = fit(series.before(tick))
        assert (model.window, model.alpha) == (trainings[k]["window"], trainings[k]["alpha"])
        values = model.value_days(DailySeries(series.items, series.prices[series.prices["day"] < ticks[k + 1]]))
        alone.append(values[(values["day"] >= tick) & (values["day"] < ticks[k + 1])])
    alone = pd.concat(alone, ignore_index=True).sort_values(["day", "item_key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[list(alone.columns)], alone, check_exact=True)
    pd.testing.assert_series_equal(rows["signal"], pd.Series(signals(alone["price"].to_numpy(), alone[
        "fair_value"].to_numpy()), name="signal"), check_exact=True)


@pytest.mark.parametrize("tick", ["2025-02-01", "2025-05-01", "2025-07-19"])
def test_tuning_scores_each_setting_on_the_rows_value_days_gives(series, tick):  # noqa: F811
    """The tuning's MAPE and n of each (window, alpha) are those of value_days' rows from the
    tuning window's first day on, which it no longer builds."""
    model = fit(series.before(pd.Timestamp(tick)))
    cut = series.before(pd.Timestamp(tick))
    tune_from = daily.last_priced_days_start(cut, model.params["tune_days"])
    # The days tuning reads (fit: the tuning window and the history its longest window needs).
    reach = pd.Timedelta(days=max(model.params["windows"]) + 28 + daily.CARRY_DAYS)
    recent = DailySeries(cut.items, cut.prices[cut.prices["day"] >= tune_from - reach])
    for tuned in model.tuning:
        probe = DailyFairValueModel(tuned["window"], tuned["alpha"], {"*": (-1.0, 1.0)})
        rows = probe.value_days(recent, matrices(recent, tuned["window"], tuned["alpha"]))
        rows = rows[rows["day"] >= tune_from]
        assert (tuned["n"], tuned["mape"]) == (len(rows), valuation_metrics(rows["fair_value"], rows["price"])["mape"])
