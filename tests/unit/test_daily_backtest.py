"""The cards' backtest and market days on small series whose numbers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.daily import DailySeries, market_days
from models.daily_backtest import FILTER_NO_NEXT_PRICE, daily_backtest

D1, D2, D3, D4 = pd.date_range("2025-03-01", periods=4, freq="D")

# Three cards over four days; C has no price on D3.
PRICES = pd.DataFrame([
    (D1, "A", 100.0), (D2, "A", 110.0), (D3, "A", 99.0), (D4, "A", 99.0),
    (D1, "B", 50.0), (D2, "B", 50.0), (D3, "B", 55.0), (D4, "B", 44.0),
    (D1, "C", 200.0), (D2, "C", 190.0), (D4, "C", 209.0),
], columns=["day", "item_key", "price"])

# Forward fair values (threshold 0.10: BUY when price <= 0.9 x fair value).
FAIR = {
    (D1, "A"): 120.0,  # 100 / 120 = 0.83: BUY
    (D1, "B"): 50.0,
    (D1, "C"): 200.0,
    (D2, "A"): 110.0,
    (D2, "B"): 60.0,  # 50 / 60 = 0.83: BUY
    (D2, "C"): 220.0,  # 190 / 220 = 0.86: BUY, but C has no D3 price: not held
    (D3, "A"): 110.0,  # 99 / 110 = 0.9 exactly: BUY (the threshold counts)
    (D3, "B"): 55.0,
    (D4, "A"): 99.0, (D4, "B"): 44.0, (D4, "C"): 209.0,  # no D5 price: not held
}


def _rows() -> pd.DataFrame:
    rows = PRICES.copy()
    rows["fair_value"] = [FAIR[(d, k)] for d, k in zip(rows["day"], rows["item_key"], strict=True)]
    return rows


def test_both_strategies_on_a_hand_computed_example():
    result = daily_backtest(_rows(), PRICES, threshold=0.10)
    assert (result.n_rows, result.n_eligible, result.n_filtered) == (11, 7, 4)
    assert result.filtered == {FILTER_NO_NEXT_PRICE: 4}  # C on D2, and the three D4 rows
    assert (result.start, result.end) == (D2, D4)

    # Buy-all, booked on the next day: D2 mean(+10 %, 0, -5 %); D3 mean(-10 %, +10 %); D4 mean(0, -20 %).
    buy_all = result.buy_all
    expected = [0.05 / 3, 0.0, -0.10]
    assert buy_all.daily_returns.to_numpy() == pytest.approx(expected)
    assert buy_all.equity.to_numpy() == pytest.approx([1 + 0.05 / 3, 1 + 0.05 / 3, (1 + 0.05 / 3) * 0.9])
    assert buy_all.total_return == pytest.approx((1 + 0.05 / 3) * 0.9 - 1)  # -8.5 %
    assert buy_all.max_drawdown == pytest.approx(0.10)  # from the D2 peak, down 10 % on D4
    assert buy_all.annualised_return == pytest.approx(0.915 ** (365 / 3) - 1)
    assert buy_all.calmar == pytest.approx((0.915 ** (365 / 3) - 1) / 0.10)
    mean = (0.05 / 3 - 0.10) / 3
    assert buy_all.sortino == pytest.approx(mean / math.sqrt(0.01 / 3) * math.sqrt(365))
    assert buy_all.sharpe == pytest.approx(mean / np.std(expected, ddof=1) * math.sqrt(365))
    assert (buy_all.n_trades, buy_all.n_up, buy_all.n_days, buy_all.n_days_with_positions) == (7, 2, 3, 3)
    assert buy_all.hit_rate == pytest.approx(2 / 7)

    # Strategy: A on D1 (+10 % on D2), B on D2 (+10 % on D3), A on D3 (0 on D4).
    strategy = result.strategy
    assert strategy.daily_returns.to_numpy() == pytest.approx([0.10, 0.10, 0.0])
    assert strategy.total_return == pytest.approx(0.21)
    # mean 1/15, deviations +1/30, +1/30, -1/15: sample std sqrt(1/300)
    assert strategy.sharpe == pytest.approx((1 / 15) / math.sqrt(1 / 300) * math.sqrt(365))
    assert strategy.max_drawdown == 0.0
    assert math.isnan(strategy.sortino) and math.isnan(strategy.calmar)  # no down day, no drawdown
    assert (strategy.n_trades, strategy.n_up, strategy.hit_rate) == (3, 2, pytest.approx(2 / 3))
    held = result.trades[result.trades["undervalued"]]
    assert sorted(zip(held["day"], held["item_key"], strict=True)) == [(D1, "A"), (D2, "B"), (D3, "A")]


def test_as_dict_is_json_ready_and_keeps_the_punks_keys():
    body = daily_backtest(_rows(), PRICES, threshold=0.10).as_dict()
    assert {"threshold", "n_rows", "n_eligible", "n_filtered", "filtered", "start", "end"} <= set(body)
    strategy = body["strategy"]
    assert strategy["sortino"] is None and strategy["calmar"] is None  # NaN is not JSON
    assert strategy["equity"] == [["2025-03-02", pytest.approx(1.1)], ["2025-03-03", pytest.approx(1.21)],
                                  ["2025-03-04", pytest.approx(1.21)]]
    assert set(strategy) == {"name", "n_trades", "n_up", "hit_rate", "total_return", "annualised_return",
                             "annualised_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "n_days",
                             "n_days_with_positions", "equity"}  # the daily returns stay out


def test_rows_without_a_usable_fair_value_are_filtered_with_their_reason():
    rows = _rows()
    rows.loc[(rows["day"] == D1) & (rows["item_key"] == "B"), "fair_value"] = np.nan
    rows.loc[(rows["day"] == D1) & (rows["item_key"] == "C"), "price"] = 0.0
    result = daily_backtest(rows, PRICES, threshold=0.10)
    assert result.filtered == {"price_not_finite_positive": 1, "fair_value_not_finite_positive": 1,
                               FILTER_NO_NEXT_PRICE: 4}
    assert result.buy_all.daily_returns.iloc[0] == pytest.approx(0.10)  # only A is left on D1


def test_no_rows_gives_an_empty_result_not_an_error():
    result = daily_backtest(_rows().iloc[0:0], PRICES)
    assert (result.n_rows, result.start, result.buy_all.n_days) == (0, None, 0)
    assert result.as_dict()["buy_all"]["sharpe"] is None


def test_market_days_count_median_and_a_chained_median_move_index():
    items = pd.DataFrame({"category": ["x", "y", "z"], "active": True},
                         index=pd.Index(["X", "Y", "Z"], name="item_key"))
    prices = pd.DataFrame([(D1, "X", 10.0), (D1, "Y", 20.0), (D1, "Z", 40.0),
                           (D2, "X", 11.0), (D2, "Y", 20.0), (D2, "Z", 44.0),
                           (D3, "X", 11.0), (D3, "Y", 30.0)], columns=["day", "item_key", "price"])
    days = market_days(DailySeries(items, prices))
    assert list(days["day"]) == [D1, D2, D3]
    assert list(days["n_cards"]) == [3, 3, 2]
    assert list(days["median_price"]) == pytest.approx([20.0, 20.0, 20.5])
    # D2: moves +10 %, 0, +10 % -> median +10 %. D3: X 0, Y +50 %, Z carried (0) -> median 0: the
    # index stays where the median price, losing Z, moves.
    assert list(days["index"]) == pytest.approx([100.0, 110.0, 110.0])


def test_market_days_of_no_prices_is_empty():
    items = pd.DataFrame({"category": ["x"], "active": True}, index=pd.Index(["X"], name="item_key"))
    empty = pd.DataFrame({"day": pd.Series(dtype="datetime64[ns]"), "item_key": pd.Series(dtype=object),
                          "price": pd.Series(dtype=float)})
    assert market_days(DailySeries(items, empty)).empty
