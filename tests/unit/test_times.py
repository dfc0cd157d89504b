"""models.times: every form a time arrives in, as naive UTC datetime64[ns]."""

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from models.times import naive_utc, naive_utc_moment


def test_every_form_of_a_time_becomes_naive_utc_nanoseconds():
    plus_two = timezone(timedelta(hours=2))
    given = pd.Series([
        datetime(2021, 10, 1, 12, 0, tzinfo=UTC),       # PostgreSQL: aware
        datetime(2021, 10, 1, 14, 0, tzinfo=plus_two),  # aware elsewhere: the same moment
        datetime(2021, 10, 1, 12, 0),                   # SQLite: naive, already UTC
        "2021-10-01 12:00:00+00:00",                    # SQLite text
        "2021-10-01T12:00:00Z",
        None,
    ], index=[5, 4, 3, 2, 1, 0])
    times = naive_utc(given)
    assert times.dtype == np.dtype("datetime64[ns]") and times.tz is None
    assert list(times[:5]) == [pd.Timestamp("2021-10-01 12:00")] * 5
    assert pd.isna(times[5])  # order kept, the index ignored


def test_empty_input_and_one_moment():
    assert naive_utc(pd.Series([], dtype=object)).dtype == np.dtype("datetime64[ns]")
    assert naive_utc(pd.date_range("2021-01-01", periods=2, tz="UTC", unit="us")).dtype == np.dtype("datetime64[ns]")
    an_hour_east = timezone(timedelta(hours=1))
    assert naive_utc_moment(datetime(2022, 1, 8, 1, 0, tzinfo=an_hour_east)) == pd.Timestamp("2022-01-08")
    assert naive_utc_moment(None) is None
