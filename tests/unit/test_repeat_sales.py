import numpy as np
import pandas as pd
import pytest

from models.repeat_sales import previous_sales, repeat_sale_spread, spread_table


def sales(rows):
    frame = pd.DataFrame(rows, columns=["ts", "item_key", "price"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame.sort_values("ts").reset_index(drop=True)


SALES = sales([
    ("2021-01-01 10:00", "1", 100.0),
    ("2021-01-01 12:00", "2", 50.0),
    ("2021-01-01 20:00", "1", 110.0),   # 10 h after 100: APE |100 - 110| / 110
    ("2021-01-05 12:00", "2", 40.0),    # 4 days after 50: APE 0.25
    ("2021-01-06 00:00", "1", 88.0),    # 4 days 4 h after 110: APE 0.25
    ("2021-01-06 01:00", "3", 10.0),    # first sale of item 3: never paired
])


def test_previous_sale_is_the_same_items_and_first_sales_have_none():
    pairs = previous_sales(SALES)
    assert list(pairs["previous_price"].fillna(-1)) == [-1, -1, 100.0, 50.0, 110.0, -1]


def test_spread_within_a_day_pairs_only_close_resales():
    m = repeat_sale_spread(SALES, pd.Timestamp("2021-01-01"), pd.Timestamp("2021-02-01"), pd.Timedelta(days=1))
    assert m["n"] == 1
    assert m["mape"] == pytest.approx(10 / 110)


def test_spread_within_a_week_and_the_window_on_the_later_sale():
    m = repeat_sale_spread(SALES, pd.Timestamp("2021-01-01"), pd.Timestamp("2021-02-01"), pd.Timedelta(days=7))
    assert m["n"] == 3
    assert m["mape"] == pytest.approx((10 / 110 + 0.25 + 0.25) / 3)
    assert m["median_ape"] == pytest.approx(0.25)
    later = repeat_sale_spread(SALES, pd.Timestamp("2021-01-02"), pd.Timestamp("2021-02-01"), pd.Timedelta(days=7))
    assert later["n"] == 2  # the pair whose later sale is before the window is not counted


def test_table_has_a_row_per_period_and_window():
    table = spread_table(SALES, {"jan": ("2021-01-01", "2021-02-01"), "feb": ("2021-02-01", "2021-03-01")}, (1, 7))
    assert list(zip(table["period"], table["within_days"], table["n"], strict=True)) == [("jan", 1, 1), ("jan", 7, 3),
                                                                           ("feb", 1, 0), ("feb", 7, 0)]
    assert np.isnan(table["mape"].iloc[2])
