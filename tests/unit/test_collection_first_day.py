"""The first day a collection could trade is stored with it (collections.first_day) and read from
the stored row where rows are checked, the punks' as the cards': ensure_collection makes the punks
with theirs, and a sale before it is refused as `before_collection` on every write path, the
webhook's plain-SQL look-up on SQLite (which hands the date back as text) included."""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from storage import ingest as ingest_store
from storage.tables import Collection, RejectedSale, Sale
from storage.webhook_batch import WebhookCall
from storage.webhook_calls import ingest_calls


def sale(event_id: str, when: str) -> dict:
    return {"event_id": event_id, "timestamp": when, "item_key": "1", "price": 95.0}


def test_the_punks_are_made_with_their_first_day(sqlite_market):
    session, coll = sqlite_market
    assert coll.first_day == date(2017, 6, 22) == ingest_store.FIRST_SALE_DAYS["cryptopunks"]
    assert ingest_store.ensure_collection(session, "someone-else").first_day is None


def test_a_sale_before_the_stored_first_day_is_refused_on_each_path(sqlite_market):
    session, coll = sqlite_market
    report = ingest_store.ingest_sales(session, coll, [sale("old", "2016-01-02T00:00:00Z")], "file", 0.2)
    assert report.reasons == {"before_collection": 1}
    call = WebhookCall([sale("old-hook", "2017-06-21T23:59:59Z"), sale("new-hook", "2024-01-02T12:00:00Z")],
                       b"{}", "d1", 1_700_000_000, "test")
    [outcome] = ingest_calls(session, "cryptopunks", [call], 0.2)
    assert (outcome.report.accepted, outcome.report.reasons) == (1, {"before_collection": 1})
    kept = session.exec(select(RejectedSale.detail).where(RejectedSale.reason == "before_collection")).all()
    assert sorted(kept) == ["2016-01-02T00:00:00+00:00 is before the collection's first day of trading, 2017-06-22",
                            "2017-06-21T23:59:59+00:00 is before the collection's first day of trading, 2017-06-22"]
    assert session.exec(select(Sale.event_id)).all() == ["new-hook"]
    # The row read, not the slug: another first day stored with the collection is the one applied.
    session.get(Collection, coll.id).first_day = date(2024, 1, 3)
    session.flush()
    later = WebhookCall([sale("after", "2024-01-02T13:00:00Z")], b"{}", "d2", 1_700_000_000, "test")
    assert ingest_calls(session, "cryptopunks", [later], 0.2)[0].report.reasons == {"before_collection": 1}
