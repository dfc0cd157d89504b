"""The daily (trading card) model: strictly causal, a calibrated band, and KPIs that can fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.daily import DailySeries, fit, previous_price
from models.daily_eval import DailyReplayConfig, kpis, replay_daily, signal_outcomes
from models.signals import BUY, SELL
from tests.unit.test_cards_fixture import DATA, universe_pairs


@pytest.fixture(scope="module")
def series() -> DailySeries:
    pairs = universe_pairs()
    items = pd.DataFrame({"item_key": [k for k, _ in pairs], "category": [c for _, c in pairs], "active": True})
    prices = pd.read_csv(DATA / "prices.csv").rename(
        columns={"date": "day", "card_id": "item_key", "market_price": "price"})
    prices["day"] = pd.to_datetime(prices["day"])
    return DailySeries(items.set_index("item_key").sort_index(), prices)


@pytest.fixture(scope="module")
def model(series):
    return fit(series.before(pd.Timestamp("2025-05-01")))


def test_fair_value_of_a_day_never_uses_that_days_price(series, model):
    """Multiplying one card's price on day D by 3 changes nothing valued for D or before."""
    day, card = pd.Timestamp("2025-06-10"), series.items.index[3]
    before = model.value_days(series)
    bumped = series.prices.copy()
    hit = (bumped["day"] == day) & (bumped["item_key"] == card)
    assert hit.sum() == 1
    bumped.loc[hit, "price"] *= 3
    after = model.value_days(DailySeries(series.items, bumped))
    upto = lambda v: v[v["day"] <= day].set_index(["day", "item_key"])["fair_value"]  # noqa: E731
    pd.testing.assert_series_equal(upto(before), upto(after))
    later = lambda v: v[(v["day"] == day + pd.Timedelta(days=1)) & (v["item_key"] == card)]["fair_value"]  # noqa: E731
    assert later(after).iloc[0] != later(before).iloc[0]  # it is used from the next day on


def test_a_spike_is_not_followed_and_gives_a_sell(series, model):
    card = series.items.index[0]
    prices = series.prices.copy()
    day = pd.Timestamp("2025-06-10")
    prices.loc[(prices["item_key"] == card) & (prices["day"] == day), "price"] *= 1.6
    valued = model.value_at(DailySeries(series.items, prices), day + pd.Timedelta(days=1), 0.10, 0.15, 30)
    row = valued.set_index("item_key").loc[card]
    assert row["signal"] == SELL and row["last_price"] > row["fair_value"] * 1.3
    assert row["p10"] <= row["fair_value"] <= row["p90"]


def test_value_at_matches_a_series_cut_before_the_nowcast(series, model):
    t = pd.Timestamp("2025-06-01T10:00")
    full = model.value_at(series, t, 0.1, 0.15, 30)
    cut = model.value_at(series.before(t), t, 0.1, 0.15, 30)
    pd.testing.assert_frame_equal(full, cut)
    assert (pd.to_datetime(full["last_sale_at"]) == pd.Timestamp("2025-05-31")).mean() > 0.9
    assert len(full) == 40


def test_replay_kpis_are_forward_and_beat_nothing_for_free(series):
    start, end = pd.Timestamp("2025-06-01"), pd.Timestamp("2025-06-22")
    rows, trainings = replay_daily(series, DailyReplayConfig(start, end, retrain_every_days=7))
    assert [t["data_end"] < t["trained_at"] for t in trainings] == [True] * 3
    report = kpis(rows, series, start, end, horizon_days=14, gain=0.05)
    m = report["model"]
    assert 0 < m["mape"] < 0.08 and 0.65 <= m["band_coverage"] <= 0.92
    assert report["coverage"] == 1.0 and len(report["per_category"]) == 4 and len(report["per_card"]) == 40
    assert report["previous_price"]["n"] == m["n"]
    s = report["signals"]
    assert sum(s["distribution"].values()) == len(rows) and s["n_known"] == len(rows)  # data runs to July
    assert 0 <= report["signal_stability"]["flip_rate"] <= 1


def test_signal_outcomes_rise_fall_and_unknown():
    items = pd.DataFrame({"category": ["meta"]}, index=pd.Index(["a"], name="item_key"))
    days = pd.date_range("2025-01-01", periods=10)
    price = [100, 100, 104, 106, 100, 95, 94, 100, 100, 100]
    series = DailySeries(items, pd.DataFrame({"day": days, "item_key": "a", "price": price}))
    rows = pd.DataFrame({"day": days[[0, 3, 8]], "item_key": "a", "price": [100, 106, 100],
                         "signal": [BUY, SELL, BUY]})
    out = signal_outcomes(rows, series, horizon_days=3, gain=0.05)
    assert out["known"].tolist() == [True, True, False]  # day 9 + 3 is past the data
    assert out["rose"].tolist() == [True, False, False]  # 106 >= 105 within 3 days of day 0
    assert out["fell"].tolist() == [False, True, False]  # 100 <= 100.7 within 3 days of day 3
    assert np.isnan(previous_price(series)["baseline"].iloc[0])


def test_the_gates_monotone_check_runs_through_the_formula_and_can_fail(series, model, monkeypatch):
    """A market 10 % higher never lowers a card's fair value; the check lifts the category index
    and forms the fair value from it again, so a formula that fell with the index fails it."""
    from fairvalue import kinds
    from models import daily

    start = pd.Timestamp("2025-06-01")
    evaluation, _ = kinds.DAILY.evaluation("contender", model, series, start)
    assert evaluation.sanity["monotone_in_floor"] is True
    combine = daily._combine

    def falling_with_the_index(parts, alpha):  # a sign slip: the fair value moves against the market
        m = combine(parts, alpha)
        return daily.Matrices(m.log_price, m.index, m.log_fair - 2 * parts.index.shift(1), m.scale, m.median_rel)

    monkeypatch.setattr(daily, "_combine", falling_with_the_index)
    broken, _ = kinds.DAILY.evaluation("contender", model, series, start)
    assert broken.sanity["monotone_in_floor"] is False
