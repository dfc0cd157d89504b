"""What the age trigger counts as new since a champion's training data ended (fairvalue/kinds.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fairvalue import kinds
from storage.tables import DailyPrice, Sale


def _sale(coll, event_id, ts, wash_reason=None):
    return Sale(collection_id=coll.id, event_id=event_id, item_key="1", ts=ts, price=1.0, content_hash=event_id,
                wash_reason=wash_reason)


def test_clean_sales_and_prices_after_the_training_data_are_counted(sqlite_market):
    session, coll = sqlite_market
    end = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
    session.add_all([_sale(coll, "a", datetime(2024, 1, 2, 11, 0, tzinfo=UTC)), _sale(coll, "b", end),
                     _sale(coll, "c", datetime(2024, 1, 3, tzinfo=UTC)),
                     _sale(coll, "d", datetime(2024, 1, 4, tzinfo=UTC), "round_trip")])
    session.add_all([DailyPrice(collection_id=coll.id, item_key="1", day=day, price=2.0)
                     for day in (date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 5))])
    session.commit()
    assert kinds.UNIQUE.count_after(session, coll, end) == 1  # not the last one trained on, nor a wash trade
    assert kinds.UNIQUE.count_after(session, coll, datetime(2024, 1, 3, tzinfo=UTC)) == 0
    assert kinds.DAILY.count_after(session, coll, datetime(2024, 1, 2, tzinfo=UTC)) == 2
    assert kinds.DAILY.count_after(session, coll, datetime(2024, 1, 5, tzinfo=UTC)) == 0
    assert (kinds.UNIQUE.observations, kinds.DAILY.observations) == ("sales", "prices")
    # A backfill: rows of days the champion's data covered, stored after it was made, are new to it.
    before_the_rows, after_them = datetime(2024, 6, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1)
    assert kinds.UNIQUE.count_after(session, coll, datetime(2024, 1, 3, tzinfo=UTC), before_the_rows) == 3
    assert kinds.UNIQUE.count_after(session, coll, datetime(2024, 1, 3, tzinfo=UTC), after_them) == 0
    assert kinds.DAILY.count_after(session, coll, datetime(2024, 1, 5, tzinfo=UTC), before_the_rows) == 3
    assert kinds.DAILY.count_after(session, coll, datetime(2024, 1, 5, tzinfo=UTC), after_them) == 0
