"""Market days are upserted, and every new or changed one is kept in market_day_revisions, so a
read as of a snapshot's data_read_at (the embedded setup, SQLite) gets the floor that snapshot
read, not one corrected since. PostgreSQL's read under a pg_snapshot is covered by
tests/integration/test_api_reads.py."""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from storage import ingest as ingest_store
from storage.market import load_market_data
from storage.tables import MarketDayRevision, utcnow


def _floors(data) -> dict[str, float]:
    return {str(day.date()): floor for day, floor in zip(data.market["day"], data.market["floor"], strict=True)}


def test_a_read_as_of_a_time_gets_each_day_as_stored_by_then(sqlite_market):
    session, coll = sqlite_market
    read_at = utcnow()
    changed = ingest_store.put_market_days(session, coll, {date(2024, 1, 1): {"floor": 120.0},
                                                           date(2024, 1, 2): {"floor": 125.0, "eth_usd": 2300.0}})
    session.commit()

    assert changed == 2
    assert _floors(load_market_data(session, coll, stored_by=read_at)) == {"2024-01-01": 100.0}
    assert _floors(load_market_data(session, coll)) == {"2024-01-01": 120.0, "2024-01-02": 125.0}
    assert _floors(load_market_data(session, coll, stored_by=utcnow())) == {"2024-01-01": 120.0, "2024-01-02": 125.0}
    assert load_market_data(session, coll, stored_by=utcnow()).market["eth_usd"].tolist()[1] == 2300.0


def test_storing_the_same_days_again_adds_no_revision(sqlite_market):
    session, coll = sqlite_market
    count = len(session.exec(select(MarketDayRevision)).all())

    assert ingest_store.put_market_days(session, coll, {date(2024, 1, 1): {"floor": 100.0, "eth_usd": None}}) == 0
    assert len(session.exec(select(MarketDayRevision)).all()) == count == 1
    # Only the value given changes: the day keeps the other one, in the new revision too.
    ingest_store.put_market_days(session, coll, {date(2024, 1, 1): {"eth_usd": 2200.0}})
    latest = session.exec(select(MarketDayRevision).order_by(MarketDayRevision.id.desc())).first()
    assert (latest.floor, latest.eth_usd) == (100.0, 2200.0)
