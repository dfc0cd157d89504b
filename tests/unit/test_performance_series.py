"""/performance's series: per day over a month or less, per calendar week (Monday to Sunday) beyond."""

from datetime import datetime

import pandas as pd

from fairvalue.track_record import _series


def _scored(times: list[str]) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame({"ts": pd.to_datetime(times), "fair_value": [100.0] * n, "price": [100.0] * n,
                         "p10": [90.0] * n, "p90": [110.0] * n})


def test_weeks_start_on_monday_and_hold_their_sunday():
    # 2021-01-04 is a Monday, 2021-01-10 its Sunday, 2021-01-11 the next Monday
    scored = _scored(["2021-01-04 10:00", "2021-01-05 10:00", "2021-01-10 23:00", "2021-01-11 01:00"])
    series = _series(scored, datetime(2021, 1, 1), datetime(2021, 3, 1))
    assert [(p["period_start"], p["n"]) for p in series] == [("2021-01-04", 3), ("2021-01-11", 1)]


def test_a_month_or_less_is_read_per_day():
    scored = _scored(["2021-01-04 10:00", "2021-01-04 11:00", "2021-01-05 10:00"])
    series = _series(scored, datetime(2021, 1, 1), datetime(2021, 1, 31))
    assert [(p["period_start"], p["n"]) for p in series] == [("2021-01-04", 2), ("2021-01-05", 1)]
