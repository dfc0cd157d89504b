"""storage.wash.stored_sales_around on SQLite (the embedded setup; PostgreSQL is covered by
tests/integration/test_wash_trades.py): a time range, bounds included, wash trades included."""

from __future__ import annotations

import pandas as pd

from storage import ingest as ingest_store
from storage.wash import stored_sales_around


def test_the_stored_sales_of_a_range_with_their_parties_and_flags(sqlite_market):
    session, coll = sqlite_market
    rows = [("before", "2024-01-02T11:59:59Z", "1", "0xa", "0xb"),
            ("first", "2024-01-02T12:00:00Z", "1", "0xa", "0xb"),
            ("back", "2024-01-03T12:00:00Z", "1", "0xb", "0xa"),
            ("last", "2024-01-04T12:00:00Z", "2", "0xc", "0xd"),
            ("after", "2024-01-04T12:00:01Z", "2", "0xc", "0xd")]
    report = ingest_store.ingest_sales(session, coll, [
        {"event_id": e, "timestamp": ts, "item_key": item, "price": 95.0, "seller": s, "buyer": b}
        for e, ts, item, s, b in rows], "test", 0.2)
    assert report.accepted == 5
    found = stored_sales_around(session, coll, pd.Timestamp("2024-01-02 12:00"), pd.Timestamp("2024-01-04 12:00"))

    assert found["event_id"].tolist() == ["first", "back", "last"]
    assert found["price"].tolist() == [95.0, 95.0, 95.0]
    assert found["wash_reason"].tolist() == [None, "wash_round_trip", None]
    assert found[["seller", "buyer"]].values.tolist() == [["0xa", "0xb"], ["0xb", "0xa"], ["0xc", "0xd"]]
    assert str(found["ts"].dtype) == "datetime64[ns]" and found["ts"].iloc[0] == pd.Timestamp("2024-01-02 12:00")
