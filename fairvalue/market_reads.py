"""/market: a collection's market per day over a window (default the last 365 days of data): the
floor, ETH/USD and the service's sales index, or for a daily-priced collection the cards priced,
their median price and the market index."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from fairvalue.answers import check_window, default_start, iso, parse_window, rounded
from fairvalue.reads import collection_row
from storage.db import session_scope
from storage.ingest import DAILY_PRICES
from storage.tables import Collection, MarketDay, Sale


def _market_window(t0: datetime | None, t1: datetime | None, last_day: date | None) -> tuple[datetime, datetime]:
    """[from, to) of /market: default the 365 days up to the end of the last day of data."""
    default_to = None
    if t1 is None:
        t1, default_to = ((datetime.combine(last_day, datetime.min.time(), UTC) + timedelta(days=1),
                           "the end of the last day of data") if last_day is not None
                          else (datetime.now(UTC), "now: there is no data yet"))
    if t0 is None:
        t0 = default_start(t1, timedelta(days=365))
    check_window(t0, t1, default_to)  # after the defaults: a `from` past the last market day is refused too
    return t0, t1


def _days_touched(t0: datetime, t1: datetime) -> tuple[date, date]:
    """Every day the window touches: [t0, t1) ends on the day before t1 only when t1 is a midnight."""
    return t0.date(), (t1 - timedelta(microseconds=1)).date()


def market(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Daily floor, ETH/USD and the service's sales index (a daily-priced collection: cards
    priced, median price and the market index). Default window: the last 365 days of data."""
    from models.market_index import INDEX_WINDOWS_DAYS, sales_index

    t0, t1 = parse_window(start, end)
    with session_scope() as session:
        coll = collection_row(session, slug)
        if coll.kind == DAILY_PRICES:
            return _daily_market(session, coll, t0, t1)
        last_day = session.exec(select(func.max(MarketDay.day)).where(MarketDay.collection_id == coll.id)).one()
        last_sale = session.exec(select(func.max(Sale.ts)).where(Sale.collection_id == coll.id)).one()
        candidates = [d for d in (last_day, last_sale.date() if last_sale else None) if d is not None]
        t0, t1 = _market_window(t0, t1, max(candidates) if candidates else None)
        window_first, window_last = _days_touched(t0, t1)
        days = session.exec(select(MarketDay.day, MarketDay.floor, MarketDay.eth_usd).where(
            MarketDay.collection_id == coll.id, MarketDay.day >= window_first, MarketDay.day <= window_last)
            .order_by(MarketDay.day)).all()
        # The sales index: clean sales, as the model's, from the longest window before the first
        # day (midnight: from a `from` of 18:00 the first day's index missed that day's morning).
        first_midnight = datetime(window_first.year, window_first.month, window_first.day, tzinfo=UTC)
        sales = session.exec(select(Sale.ts, Sale.price).where(
            Sale.collection_id == coll.id, Sale.wash_reason.is_(None),
            Sale.ts >= first_midnight - timedelta(days=max(INDEX_WINDOWS_DAYS)), Sale.ts < t1)).all()
    calendar = pd.date_range(pd.Timestamp(window_first), pd.Timestamp(window_last), freq="D")
    levels = pd.Series(float("nan"), index=calendar)
    if sales and len(calendar):
        frame = pd.DataFrame(sales, columns=["ts", "price"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
        frame = frame.sort_values("ts", kind="stable")
        levels = sales_index(frame, calendar)
    by_day = {d[0]: d for d in days}
    points = []
    for day, level in zip(calendar, levels.to_numpy(), strict=True):
        row = by_day.get(day.date())
        if row is None and pd.isna(level):
            continue
        points.append({"day": day.date().isoformat(), "floor": rounded(row[1]) if row else None,
                       "eth_usd": rounded(row[2]) if row else None, "index": rounded(level)})
    return {"collection": coll.slug, "currency": coll.currency, "from": iso(t0), "to": iso(t1),
            "index_meaning": "25th percentile of sale prices over the 3 days before the day (7/14 when thin)",
            "days": points}


def _daily_market(session: Session, coll: Collection, t0: datetime | None, t1: datetime | None) -> dict[str, Any]:
    """The cards' market per priced day of the window (models.daily.market_days). The index is
    computed on the whole series, so a day's level is the same whatever window asks for it."""
    from fairvalue.kinds import kind_of
    from models.daily import MARKET_INDEX_MEANING, market_days

    series = kind_of(coll).load(session, coll)
    t0, t1 = _market_window(t0, t1, series.last_day.date() if series.last_day is not None else None)
    window_first, window_last = _days_touched(t0, t1)
    days = market_days(series)
    days = days[(days["day"].dt.date >= window_first) & (days["day"].dt.date <= window_last)]
    return {"collection": coll.slug, "currency": coll.currency, "kind": DAILY_PRICES, "from": iso(t0), "to": iso(t1),
            "index_meaning": MARKET_INDEX_MEANING,
            "days": [{"day": d.date().isoformat(), "n_cards": int(n), "median_price": rounded(m), "index": rounded(i)}
                     for d, n, m, i in zip(days["day"], days["n_cards"], days["median_price"], days["index"],
                                           strict=True)]}
