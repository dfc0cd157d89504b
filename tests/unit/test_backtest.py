import json
import math

import numpy as np
import pandas as pd
import pytest

from models.backtest import (
    annualised_return,
    annualised_volatility,
    backtest,
    calmar,
    downside_deviation,
    max_drawdown,
    next_sale,
    sharpe,
    sortino,
    total_return,
)

D1, D2, D3 = pd.Timestamp("2021-01-01"), pd.Timestamp("2021-01-02"), pd.Timestamp("2021-01-03")


def _index(levels: dict[str, float]) -> pd.Series:
    return pd.Series(list(levels.values()), index=pd.DatetimeIndex(list(levels.keys())))


def _predictions(rows: list[tuple]) -> pd.DataFrame:
    """rows: (event_id, timestamp, item_id, price, fair_value)."""
    frame = pd.DataFrame(rows, columns=["event_id", "timestamp", "item_id", "price", "fair_value"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["p10"] = frame["fair_value"] * 0.8
    frame["p90"] = frame["fair_value"] * 1.2
    return frame


def _sales(rows: list[tuple]) -> pd.DataFrame:
    """rows: (ts, item_key, price)."""
    frame = pd.DataFrame(rows, columns=["ts", "item_key", "price"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


# --- the small measures -------------------------------------------------------------------


def test_measures_on_a_hand_computed_series():
    r = np.array([0.01, -0.01, 0.03])
    # mean 0.01; deviations 0, -0.02, +0.02 -> sample variance 0.0008 / 2 = 0.0004 -> std 0.02
    assert sharpe(r) == pytest.approx(0.5 * math.sqrt(365))
    assert annualised_volatility(r) == pytest.approx(0.02 * math.sqrt(365))
    # downside: sqrt((0 + 0.01^2 + 0) / 3) over all three days
    assert downside_deviation(r) == pytest.approx(0.01 / math.sqrt(3))
    assert sortino(r) == pytest.approx(math.sqrt(3) * math.sqrt(365))
    assert total_return(r) == pytest.approx(1.01 * 0.99 * 1.03 - 1)
    assert annualised_return(r) == pytest.approx((1.01 * 0.99 * 1.03) ** (365 / 3) - 1)
    # equity 1.01, 0.9999, 1.029897: the fall from 1.01 to 0.9999 is exactly 1%
    assert max_drawdown(np.cumprod(1 + r)) == pytest.approx(0.01)
    assert calmar(0.2, 0.05) == pytest.approx(4.0)


def test_measures_are_nan_or_zero_when_undefined():
    assert math.isnan(sharpe(np.array([0.01, 0.01, 0.01])))  # no variation
    assert math.isnan(sharpe(np.array([0.01])))
    assert math.isnan(sortino(np.array([0.01, 0.02])))  # no down day: unbounded
    assert max_drawdown(np.array([1.0, 1.1, 1.2])) == 0.0
    assert math.isnan(calmar(0.3, 0.0))


def test_a_gain_too_large_to_annualise_is_infinite_not_an_error():
    # 8 ** 365 is past a float's range: a Python float's power raised OverflowError
    assert annualised_return(np.array([7.0])) == math.inf
    assert annualised_return(np.array([7.0, 0.0])) == pytest.approx(8.0 ** (365 / 2) - 1)
    assert math.isnan(calmar(math.inf, 0.1))


def test_a_short_calendar_with_a_large_resale_gain_backtests():
    predictions = _predictions([("e1", "2021-01-01 10:00", "7", 1.0, 2.0)])
    sales = _sales([("2021-01-01 10:00", "7", 1.0), ("2021-01-01 12:00", "7", 8.0)])
    result = backtest(predictions, sales, _index({"2021-01-01": 1.0}))
    assert result.strategy.total_return == pytest.approx(7.0)
    assert result.strategy.annualised_return == math.inf
    assert json.loads(json.dumps(result.as_dict()))["strategy"]["annualised_return"] is None


def test_a_loss_on_the_first_day_is_a_drawdown_from_the_starting_capital():
    assert max_drawdown(np.array([0.9, 0.95])) == pytest.approx(0.1)


# --- the 3-day toy market ------------------------------------------------------------------
# index 100, 110, 99. Item a: bought day 1 at 10 (fair 12: undervalued), resold day 3 at 11.
# Item b: bought day 1 at 10 (fair 10: not undervalued), never resold: marked to 9.9 at the end.
# strategy (a only): day 2 +10% (11/10), day 3 11/11 - 1 = 0   -> r = [0, 0.1, 0]
# buy-all (a and b): day 2 +10%, day 3 mean(0, 9.9/11 - 1 = -0.1) -> r = [0, 0.1, -0.05]


@pytest.fixture
def toy():
    predictions = _predictions(
        [
            ("e1", "2021-01-01 10:00", "a", 10.0, 12.0),
            ("e2", "2021-01-01 11:00", "b", 10.0, 10.0),
        ]
    )
    sales = _sales(
        [
            ("2021-01-01 10:00", "a", 10.0),
            ("2021-01-01 11:00", "b", 10.0),
            ("2021-01-03 09:00", "a", 11.0),
        ]
    )
    index = _index({"2021-01-01": 100.0, "2021-01-02": 110.0, "2021-01-03": 99.0})
    return backtest(predictions, sales, index)


def test_toy_market_strategy_by_hand(toy):
    s = toy.strategy
    assert list(s.daily_returns) == pytest.approx([0.0, 0.1, 0.0])
    assert list(s.equity) == pytest.approx([1.0, 1.1, 1.1])
    assert list(s.equity.index) == [D1, D2, D3]
    assert (s.n_trades, s.n_closed_by_resale, s.n_closed_at_horizon_or_end) == (1, 1, 0)
    assert s.total_return == pytest.approx(0.1)  # 11 / 10 - 1: the realised resale
    assert s.annualised_return == pytest.approx(1.1 ** (365 / 3) - 1)
    # mean 1/30, sample variance ((1/30)^2 + (2/30)^2 + (1/30)^2) / 2 = 1/300
    assert s.sharpe == pytest.approx(math.sqrt(365 / 3))
    assert math.isnan(s.sortino)  # no down day
    assert s.max_drawdown == 0.0
    assert math.isnan(s.calmar)
    assert s.hit_rate == 1.0


def test_toy_market_buy_all_by_hand(toy):
    b = toy.buy_all
    assert list(b.daily_returns) == pytest.approx([0.0, 0.1, -0.05])
    assert list(b.equity) == pytest.approx([1.0, 1.1, 1.045])
    assert (b.n_trades, b.n_closed_by_resale, b.n_closed_at_horizon_or_end) == (2, 1, 1)
    assert b.total_return == pytest.approx(0.045)
    # mean 1/60; deviations -1/60, 5/60, -4/60 -> sample variance 42/3600/2 = 21/3600
    assert b.sharpe == pytest.approx(math.sqrt(365 / 21))
    # downside deviation sqrt(0.05^2 / 3); (1/60) / (0.05 / sqrt 3) = 1 / sqrt 3
    assert b.sortino == pytest.approx(math.sqrt(365 / 3))
    assert b.max_drawdown == pytest.approx(1 - 1.045 / 1.1)  # = 0.05
    assert b.calmar == pytest.approx((1.045 ** (365 / 3) - 1) / 0.05)
    assert b.hit_rate == 1.0  # b was not closed by a resale, so it is not in the hit rate


def test_toy_market_trades_and_counts(toy):
    trades = toy.trades.set_index("event_id")
    assert trades.loc["e1", "exit_kind"] == "resale"
    assert trades.loc["e1", "exit_price"] == 11.0
    assert trades.loc["e2", "exit_kind"] == "end_of_data"
    assert trades.loc["e2", "exit_price"] == pytest.approx(9.9)  # 10 * 99 / 100
    assert list(trades["undervalued"]) == [True, False]
    assert (toy.n_rows, toy.n_eligible, toy.n_filtered) == (2, 2, 0)
    assert (toy.start, toy.end) == (D1, D3)


def test_as_dict_is_json_with_curves_as_day_value_pairs(toy):
    d = toy.as_dict()
    text = json.dumps(d, allow_nan=False)  # NaN measures must have become null
    assert json.loads(text)["strategy"]["equity"] == [["2021-01-01", 1.0], ["2021-01-02", 1.1], ["2021-01-03", 1.1]]
    assert d["strategy"]["sortino"] is None
    assert d["buy_all"]["n_trades"] == 2
    # Every count and measure of the result, and its curve; the daily returns stay out.
    assert set(d["strategy"]) == {
        "name", "n_trades", "n_closed_by_resale", "n_closed_at_horizon_or_end", "n_resale_wins",
        "n_resale_beat_market", "n_days", "n_days_with_positions", "hit_rate", "hit_rate_vs_market",
        "n_resale_with_median", "n_resale_beat_median", "hit_rate_vs_median",
        "total_return", "annualised_return", "annualised_volatility", "sharpe", "sortino", "max_drawdown",
        "calmar", "equity"}
    assert all(type(d["strategy"][k]) is int for k in ("n_trades", "n_days", "n_resale_wins"))
    # The naive baseline is a third block with the same keys (three sales: no week's median, no trade).
    assert set(d["below_market"]) == set(d["strategy"]) == set(d["buy_all"])
    assert d["below_market"]["name"] == "below_market" and d["below_market"]["n_trades"] == 0


def test_threshold_is_configurable_and_inclusive():
    predictions = _predictions(
        [
            ("e1", "2021-01-01 10:00", "a", 9.0, 10.0),  # exactly 10% under
            ("e2", "2021-01-01 11:00", "b", 8.0, 10.0),  # 20% under
        ]
    )
    index = _index({"2021-01-01": 100.0, "2021-01-02": 100.0})
    sales = _sales([])
    assert backtest(predictions, sales, index, threshold=0.10).strategy.n_trades == 2
    assert backtest(predictions, sales, index, threshold=0.15).strategy.n_trades == 1


# --- exits ---------------------------------------------------------------------------------


def test_horizon_cuts_off_a_later_resale_and_marks_at_the_horizon_day():
    predictions = _predictions([("e1", "2021-01-01 12:00", "a", 10.0, 20.0)])
    sales = _sales([("2021-01-03 12:00:01", "a", 50.0)])  # one second past the 2-day horizon
    index = _index({"2021-01-01": 100.0, "2021-01-02": 120.0, "2021-01-03": 150.0, "2021-01-04": 150.0})
    result = backtest(predictions, sales, index, horizon_days=2)
    trade = result.trades.iloc[0]
    assert trade["exit_kind"] == "horizon"
    assert trade["exit_day"] == D3
    assert trade["exit_price"] == pytest.approx(15.0)  # 10 * 150 / 100, not the resale at 50
    assert result.strategy.total_return == pytest.approx(0.5)
    assert result.strategy.n_closed_at_horizon_or_end == 1


def test_horizon_on_the_last_index_day_is_a_horizon_exit_and_past_it_is_end_of_data():
    predictions = _predictions([("e1", "2021-01-01 12:00", "a", 10.0, 20.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 120.0, "2021-01-03": 150.0})
    assert backtest(predictions, _sales([]), index, horizon_days=2).trades.iloc[0]["exit_kind"] == "horizon"
    trade = backtest(predictions, _sales([]), index, horizon_days=3).trades.iloc[0]
    assert (trade["exit_kind"], trade["exit_day"]) == ("end_of_data", D3)


def test_a_resale_exactly_at_the_horizon_counts():
    predictions = _predictions([("e1", "2021-01-01 12:00", "a", 10.0, 20.0)])
    sales = _sales([("2021-01-03 12:00", "a", 50.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 120.0, "2021-01-03": 150.0})
    trade = backtest(predictions, sales, index, horizon_days=2).trades.iloc[0]
    assert (trade["exit_kind"], trade["exit_price"]) == ("resale", 50.0)


def test_exit_is_the_next_sale_strictly_after_entry_never_an_earlier_or_same_instant_one():
    predictions = _predictions([("e1", "2021-01-02 12:00", "a", 10.0, 20.0)])
    sales = _sales(
        [
            ("2021-01-01 12:00", "a", 99.0),  # before the entry
            ("2021-01-02 12:00", "a", 10.0),  # the scored sale itself
            ("2021-01-02 12:00", "a", 77.0),  # another report at the same instant
            ("2021-01-03 08:00", "b", 55.0),  # another item
            ("2021-01-04 08:00", "a", 12.0),  # the real next sale
            ("2021-01-04 09:00", "a", 30.0),  # a later one
        ]
    )
    index = _index({f"2021-01-0{d}": 100.0 for d in range(1, 6)})
    trade = backtest(predictions, sales, index).trades.iloc[0]
    assert (trade["exit_kind"], trade["exit_price"]) == ("resale", 12.0)
    assert trade["exit_ts"] == pd.Timestamp("2021-01-04 08:00")


def test_only_earlier_sales_means_no_resale():
    ts, price = next_sale(
        pd.to_datetime(["2021-01-05"]), ["a"], _sales([("2021-01-01", "a", 5.0), ("2021-01-05", "a", 6.0)]), 90
    )
    assert pd.isna(ts[0]) and np.isnan(price[0])


def test_next_sale_keeps_input_order_and_separates_items():
    sales = _sales([("2021-01-03", "a", 3.0), ("2021-01-02", "b", 2.0), ("2021-01-04", "a", 4.0)])
    ts, price = next_sale(pd.to_datetime(["2021-01-03", "2021-01-01", "2021-01-01"]), ["a", "b", "a"], sales, 90)
    assert list(price) == [4.0, 2.0, 3.0]


def test_resale_after_the_index_ends_is_not_used():
    predictions = _predictions([("e1", "2021-01-01 12:00", "a", 10.0, 20.0)])
    sales = _sales([("2021-01-05 12:00", "a", 50.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 110.0})
    trade = backtest(predictions, sales, index).trades.iloc[0]
    assert (trade["exit_kind"], trade["exit_day"]) == ("end_of_data", D2)
    assert trade["exit_price"] == pytest.approx(11.0)


def test_hit_rate_vs_market_removes_the_market_move():
    # both resold higher (raw hits), but only b beat the index's +20%
    predictions = _predictions(
        [("e1", "2021-01-01 10:00", "a", 10.0, 20.0), ("e2", "2021-01-01 10:00", "b", 10.0, 20.0)]
    )
    sales = _sales([("2021-01-02 10:00", "a", 11.0), ("2021-01-02 10:00", "b", 13.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 120.0})
    s = backtest(predictions, sales, index).strategy
    assert (s.n_resale_wins, s.hit_rate) == (2, 1.0)
    assert (s.n_resale_beat_market, s.hit_rate_vs_market) == (1, 0.5)


def test_hit_rate_vs_median_uses_the_typical_sales_move_by_hand():
    # Entries a, b, c at 10 on 01-02 10:00; the week before holds ten sales at 10: median 10 there.
    # On 01-03 twenty sales at 12; at the resales (01-04 09:00) the week holds 13 tens (the ten and
    # the three entries) and 20 twelves: median 12, a +20 % move. The index (a low percentile)
    # moved +5 % only. Resales: a 12.5 (+25 %), b 11.5 (+15 %), c 9 (-10 %).
    # d enters on 01-10 12:00 at 15, resold 01-11 at 20: the week before it holds 3 sales (the
    # resales; the twelves are older), under INDEX_MIN_SALES, so no median and d is not counted.
    rows = [(f"2021-01-01 {h:02d}:00", f"m{h}", 10.0) for h in range(10)]
    rows += [("2021-01-02 10:00", item, 10.0) for item in "abc"]
    rows += [(f"2021-01-03 00:{i:02d}", f"n{i}", 12.0) for i in range(20)]
    rows += [("2021-01-04 09:00", "a", 12.5), ("2021-01-04 09:00", "b", 11.5), ("2021-01-04 09:00", "c", 9.0)]
    rows += [("2021-01-10 12:00", "d", 15.0), ("2021-01-11 12:00", "d", 20.0)]
    predictions = _predictions([(item, "2021-01-02 10:00", item, 10.0, 20.0) for item in "abc"]
                               + [("d", "2021-01-10 12:00", "d", 15.0, 30.0)])
    index = _index({"2021-01-02": 100.0, "2021-01-04": 105.0, "2021-01-11": 105.0})
    result = backtest(predictions, _sales(rows), index)
    s = result.strategy
    assert (s.n_trades, s.n_closed_by_resale) == (4, 4)
    assert (s.n_resale_wins, s.hit_rate) == (3, 0.75)  # a, b, d
    assert (s.n_resale_beat_market, s.hit_rate_vs_market) == (3, 0.75)  # 1.25, 1.15, 1.33 > 1.05, 1.0
    assert (s.n_resale_with_median, s.n_resale_beat_median) == (3, 1)  # only a beat +20 %
    assert s.hit_rate_vs_median == pytest.approx(1 / 3)
    trades = result.trades.set_index("event_id")
    assert list(trades.loc[["a", "b", "c"], "market_median"]) == [10.0, 10.0, 10.0]
    assert list(trades.loc[["a", "b", "c"], "exit_market_median"]) == [12.0, 12.0, 12.0]
    assert math.isnan(trades.loc["d", "market_median"]) and math.isnan(trades.loc["d", "exit_market_median"])


def test_hit_rate_vs_median_counts_no_mark_and_is_undefined_without_a_median():
    # One trade marked at the horizon (never resold) and one resale without any week's median.
    predictions = _predictions([("e1", "2021-01-01 10:00", "a", 10.0, 20.0),
                                ("e2", "2021-01-01 10:00", "b", 10.0, 20.0)])
    sales = _sales([("2021-01-02 10:00", "b", 12.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-05": 100.0})
    s = backtest(predictions, sales, index, horizon_days=2).strategy
    assert (s.n_closed_by_resale, s.n_resale_with_median, s.n_resale_beat_median) == (1, 0, 0)
    assert math.isnan(s.hit_rate_vs_median) and s.hit_rate_vs_market == 1.0


def test_same_day_resale_is_booked_on_the_entry_day():
    predictions = _predictions([("e1", "2021-01-01 08:00", "a", 10.0, 20.0)])
    sales = _sales([("2021-01-01 20:00", "a", 12.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 100.0})
    s = backtest(predictions, sales, index).strategy
    assert list(s.daily_returns) == pytest.approx([0.2])
    assert s.total_return == pytest.approx(0.2)


def test_days_without_open_positions_have_zero_return_and_count():
    # a: day 1 -> day 2 (+10%); b: day 4 -> day 5 (+10%); day 3 holds nothing.
    predictions = _predictions(
        [("e1", "2021-01-01 10:00", "a", 10.0, 20.0), ("e2", "2021-01-04 10:00", "b", 10.0, 20.0)]
    )
    sales = _sales([("2021-01-02 10:00", "a", 11.0), ("2021-01-05 10:00", "b", 11.0)])
    index = _index({f"2021-01-0{d}": 100.0 for d in range(1, 6)})
    s = backtest(predictions, sales, index).strategy
    assert list(s.daily_returns) == pytest.approx([0.0, 0.1, 0.0, 0.0, 0.1])
    assert s.n_days == 5 and s.n_days_with_positions == 2
    assert s.annualised_return == pytest.approx(1.21 ** (365 / 5) - 1)


def test_strategy_and_buy_all_share_one_calendar():
    # the strategy's only trade ends on day 2 but buy-all's runs to day 3: both curves cover days 1-3
    predictions = _predictions(
        [("e1", "2021-01-01 10:00", "a", 10.0, 20.0), ("e2", "2021-01-01 10:00", "b", 10.0, 10.0)]
    )
    sales = _sales([("2021-01-02 10:00", "a", 11.0), ("2021-01-03 10:00", "b", 8.0)])
    index = _index({"2021-01-01": 100.0, "2021-01-02": 100.0, "2021-01-03": 100.0})
    result = backtest(predictions, sales, index)
    assert list(result.strategy.equity.index) == list(result.buy_all.equity.index) == [D1, D2, D3]
    assert list(result.strategy.daily_returns) == pytest.approx([0.0, 0.1, 0.0])
    # day 2: a exits +10%, b sits at index 100/100 -> 0; day 3: b exits -20%
    assert list(result.buy_all.daily_returns) == pytest.approx([0.0, 0.05, -0.2])
    assert result.buy_all.hit_rate == pytest.approx(0.5)


# --- filtering -----------------------------------------------------------------------------


def test_ineligible_rows_are_counted_with_reasons():
    predictions = _predictions(
        [
            ("ok", "2021-01-01 10:00", "a", 10.0, 20.0),
            ("no_fair", "2021-01-01 10:00", "b", 10.0, np.nan),
            ("zero_price", "2021-01-01 10:00", "c", 0.0, 20.0),
            ("nan_price_and_fair", "2021-01-01 10:00", "d", np.nan, np.nan),
            ("neg_fair", "2021-01-01 10:00", "e", 10.0, -1.0),
            ("no_index", "2020-12-25 10:00", "f", 10.0, 20.0),
        ]
    )
    index = _index({"2021-01-01": 100.0, "2021-01-02": 100.0})
    result = backtest(predictions, _sales([]), index)
    assert (result.n_rows, result.n_eligible, result.n_filtered) == (6, 1, 5)
    assert result.filtered == {
        "price_not_finite_positive": 2,
        "fair_value_not_finite_positive": 2,
        "no_index_level_on_entry_day": 1,
    }
    assert list(result.trades["event_id"]) == ["ok"]


def test_no_eligible_rows_gives_empty_curves_and_zero_counts():
    predictions = _predictions([("x", "2021-01-01 10:00", "a", np.nan, 20.0)])
    result = backtest(predictions, _sales([]), _index({"2021-01-01": 100.0}))
    assert result.n_eligible == 0 and result.strategy.n_trades == 0
    assert result.strategy.equity.empty
    json.dumps(result.as_dict(), allow_nan=False)


# --- the naive baseline: cheap against the week's median sale, no model ----------------------
# Ten sales of other items on 2021-01-01 at 10, 11, ..., 19: the median is 14.5 and the
# threshold price 14.5 * 0.9 = 13.05. Three scored sales at 2021-01-02 10:00, index flat at 100:
#   a at 13.00, fair 10 (model: no)  -> below 13.05: the baseline buys; resold 01-03 at 14.30 (+10 %)
#   b at 14.00, fair 20 (model: buy) -> above 13.05: the baseline does not; never resold (flat)
#   c at 13.05, fair 13.05 (model: no) -> exactly at the threshold: the baseline buys; resold 01-04 at 10.44 (-20 %)
# Two price-1 sales would drag the median down if counted: one a second outside the week, one at
# the scored sales' very instant (strictly before means neither).
# below_market (a, c): 01-02 nothing closes (entry day) -> 0; 01-03 mean(+10 % a, 0 c) = 0.05;
# 01-04 c exits -20 % -> r = [0, 0.05, -0.2]; strategy (b) is flat.


def _week(n_background: int = 10) -> pd.DataFrame:
    rows = [(f"2021-01-01 {h:02d}:00:00", f"m{h}", 10.0 + h) for h in range(n_background)]
    rows += [("2020-12-26 09:59:59", "old", 1.0), ("2021-01-02 10:00:00", "z", 1.0)]
    rows += [("2021-01-02 10:00:00", item, price) for item, price in (("a", 13.0), ("b", 14.0), ("c", 13.05))]
    rows += [("2021-01-03 09:00:00", "a", 14.3), ("2021-01-04 09:00:00", "c", 10.44)]  # the resales
    return _sales(rows)


_WEEK_PREDICTIONS = [
    ("a", "2021-01-02 10:00", "a", 13.0, 10.0),
    ("b", "2021-01-02 10:00", "b", 14.0, 20.0),
    ("c", "2021-01-02 10:00", "c", 13.05, 13.05),
]
_WEEK_INDEX = {f"2021-01-0{d}": 100.0 for d in range(1, 5)}


def test_below_market_buys_sales_the_threshold_under_the_weeks_median_by_hand():
    result = backtest(_predictions(_WEEK_PREDICTIONS), _week(), _index(_WEEK_INDEX))
    trades = result.trades.set_index("event_id")
    assert list(trades["market_median"]) == pytest.approx([14.5, 14.5, 14.5])
    assert list(trades["below_market"]) == [True, False, True]
    assert list(trades["undervalued"]) == [False, True, False]
    naive = result.below_market
    assert naive.name == "below_market"
    assert (naive.n_trades, naive.n_closed_by_resale, naive.n_closed_at_horizon_or_end) == (2, 2, 0)
    assert list(naive.daily_returns) == pytest.approx([0.0, 0.05, -0.2])
    assert naive.total_return == pytest.approx(1.05 * 0.8 - 1)
    assert naive.max_drawdown == pytest.approx(0.2)  # from 1.05 to 0.84
    assert (naive.hit_rate, naive.hit_rate_vs_market) == (0.5, 0.5)
    # One calendar for all three; the model's pick is flat, buy-all holds the three.
    assert list(naive.equity.index) == list(result.strategy.equity.index) == list(result.buy_all.equity.index)
    assert result.strategy.total_return == 0.0 and result.buy_all.n_trades == 3
    assert result.as_dict()["below_market"]["n_trades"] == 2


def test_below_market_follows_the_threshold():
    # at 20 % under, the bar is 14.5 * 0.8 = 11.6: none of the three is that cheap
    result = backtest(_predictions(_WEEK_PREDICTIONS), _week(), _index(_WEEK_INDEX), threshold=0.20)
    assert result.below_market.n_trades == 0 and not result.trades["below_market"].any()


def test_below_market_without_ten_sales_in_the_week_has_no_median_and_buys_nothing():
    result = backtest(_predictions(_WEEK_PREDICTIONS), _week(n_background=9), _index(_WEEK_INDEX))
    assert result.trades["market_median"].isna().all()
    assert result.below_market.n_trades == 0
    assert result.below_market.total_return == 0.0  # idle days count, at 0
