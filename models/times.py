"""Times in the project's convention: naive datetime64[ns] in UTC.

PostgreSQL hands back aware datetimes, SQLite naive ones or their ISO text, and pandas frames
built from either keep what they were given; the features, the replay and the reports compare
times only in this one form."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

# How precisely a sale's timestamp is known, stored with each sale (sales.time_precision). Within
# an hour-precision sale's hour the order of the sales is unknown, so none of them may count as
# before another (features.valuation_moments).
SECOND, HOUR = "second", "hour"
TIME_PRECISIONS = (SECOND, HOUR)
# What a sale that does not declare its precision gets from its source: the bundled second source
# carries the month number in the minute field (data/cryptopunks/SOURCES.md).
HOUR_PRECISION_SOURCES = frozenset({"cryptopunks-vis"})


def naive_utc(values: Any) -> pd.DatetimeIndex:
    """Aware or naive datetimes, datetime64 values or ISO text as naive-UTC datetime64[ns]; naive
    input is taken to be UTC already. A DatetimeIndex in the input's order (assign it to a frame's
    column as it is)."""
    times = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="mixed"))
    return times.tz_localize(None).astype("datetime64[ns]")


def naive_utc_moment(value: Any) -> pd.Timestamp | None:
    """One moment in the same convention; None stays None."""
    return None if value is None else naive_utc([value])[0]


def default_time_precision(source: str) -> str:
    """The precision of a sale that does not declare one: HOUR for HOUR_PRECISION_SOURCES."""
    return HOUR if source in HOUR_PRECISION_SOURCES else SECOND


def hour_precision(precisions: Iterable[str]) -> np.ndarray:
    """True for each sale whose time_precision is HOUR: the frames' `hour_precision` column."""
    return np.fromiter((precision == HOUR for precision in precisions), dtype=bool)


def stale_limited(as_of: pd.Timestamp, last_input: pd.Timestamp | None,
                  stale_after_days: float | None) -> pd.Timestamp:
    """The moment a market is valued at for a nowcast asked for at `as_of`: `as_of` itself, unless
    its last input (the moment the latest sale, floor or price became known) is more than
    `stale_after_days` before it; then that long after the last input, so the values (and the
    ages their signals read) stay those of the last market known. One rule for every kind of
    market: models.nowcast.valuation_moment (sales, floors), models.daily.valuation_moment (daily
    prices). No input, or no limit (None or 0): `as_of`."""
    if not stale_after_days or last_input is None or pd.isna(last_input):
        return as_of
    return min(as_of, last_input + pd.Timedelta(days=stale_after_days))
