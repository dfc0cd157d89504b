"""Retention on SQLite: old snapshots keep the rows their readers still need, and every sale the
track record or the monitor scores meets the same value after thinning as before; replaced
listing events go, and the asks of any moment from the window on stay as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlmodel import select

from fairvalue.lifecycle import live_scored
from models.listings import open_asks
from models.times import naive_utc_moment
from storage.market import load_listings
from storage.retention import apply_retention
from storage.tables import Listing, NowcastRow, NowcastSnapshot, PublishedSnapshot, Sale
from tests.builders import items_and_models

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
OLD = datetime(2024, 1, 10, tzinfo=UTC)  # 51 days before NOW: past the 14 days kept
ITEMS = ["1", "2", "3"]


def _snapshot(session, coll, version, status, published_at, archived=True, created_at=None) -> int:
    snap = NowcastSnapshot(collection_id=coll.id, model_version_id=version, as_of=published_at or created_at,
                           n_items=len(ITEMS), status=status, published_at=published_at,
                           created_at=created_at or published_at,
                           archive_uri="s3://archive/x" if archived and status == "published" else None)
    session.add(snap)
    session.flush()
    session.add_all(NowcastRow(snapshot_id=snap.id, item_key=key, fair_value=100.0 + snap.id) for key in ITEMS)
    return snap.id


def _sale(session, coll, event_id, item, ts) -> None:
    session.add(Sale(collection_id=coll.id, event_id=event_id, item_key=item, ts=ts, price=90.0, content_hash="0"))


def _rows(session, coll) -> dict[int, list[str]]:
    rows = session.exec(select(NowcastRow.snapshot_id, NowcastRow.item_key).join(
        NowcastSnapshot, NowcastSnapshot.id == NowcastRow.snapshot_id).where(
        NowcastSnapshot.collection_id == coll.id).order_by(NowcastRow.item_key)).all()
    kept: dict[int, list[str]] = {}
    for snapshot_id, key in rows:
        kept.setdefault(snapshot_id, []).append(key)
    return kept


def test_old_snapshots_keep_the_day_s_last_and_the_values_sales_are_scored_against(sqlite_market):
    thinning_keeps_what_is_scored(*sqlite_market)


def test_a_replaced_listing_event_goes_and_every_ask_from_the_window_on_stays(sqlite_market):
    dropping_replaced_listings_keeps_the_asks(*sqlite_market)


def thinning_keeps_what_is_scored(session, coll) -> None:
    """Also run on PostgreSQL (tests/integration/test_retention.py)."""
    v1, v2 = items_and_models(session, coll, ITEMS, versions=2)  # a champion and a contender
    at = OLD.replace(hour=10)
    s1 = _snapshot(session, coll, v1, "published", at)
    s2 = _snapshot(session, coll, v1, "published", at + timedelta(minutes=30), archived=False)  # a store outage
    s3 = _snapshot(session, coll, v1, "published", at + timedelta(minutes=60))
    s4 = _snapshot(session, coll, v1, "published", at + timedelta(hours=3))
    s5 = _snapshot(session, coll, v1, "published", at + timedelta(hours=4))  # the day's last
    recent = _snapshot(session, coll, v1, "published", NOW - timedelta(days=2))  # inside the window
    current = _snapshot(session, coll, v1, "published", NOW - timedelta(hours=1))
    # A contender in shadow, stamped with the champion snapshots' times.
    h1 = _snapshot(session, coll, v2, "shadow", at)
    h2 = _snapshot(session, coll, v2, "shadow", at + timedelta(minutes=30))
    h3 = _snapshot(session, coll, v2, "shadow", at + timedelta(hours=3))  # the contender's last
    superseded = _snapshot(session, coll, v1, "superseded", None, created_at=at)
    _sale(session, coll, "e1", "2", at + timedelta(minutes=10))  # meets s1 and h1
    _sale(session, coll, "e2", "3", at + timedelta(minutes=45))  # meets s2 and h2
    _sale(session, coll, "e3", "1", at + timedelta(hours=3, minutes=30))  # meets s4 and h3
    _sale(session, coll, "e4", "3", at + timedelta(hours=3))  # at s4's very publication: meets s3 and h2
    session.commit()
    since = OLD - timedelta(days=1)
    streams = [dict(), dict(statuses=("shadow",), model_version_id=v2),
               dict(statuses=("published", "shadow"), model_version_id=v1)]
    before = [live_scored(session, coll, since, **stream) for stream in streams]

    first = apply_retention(session, coll, NOW, keep_days=14, max_rows=len(ITEMS))  # one snapshot's worth
    session.commit()
    rest = apply_retention(session, coll, NOW, keep_days=14)
    session.commit()
    again = apply_retention(session, coll, NOW, keep_days=14)

    rows = _rows(session, coll)
    assert rows[s1] == ["2"] and rows[h1] == ["2"]
    assert rows[h2] == ["3"]  # e2, and e4 at s4's publication; the contender's next snapshot is h3
    assert rows[s3] == ["3"] and rows[s4] == ["1", "3"]  # e4 at s4's publication: either side keeps it
    for whole in (s2, s5, recent, current, h3):
        assert rows[whole] == ITEMS, whole
    assert superseded not in rows
    assert (first.snapshots_thinned, first.rows_deleted) == (1, 3)  # the oldest work first: the superseded one
    assert (rest.snapshots_thinned, rest.rows_deleted) == (5, 2 + 2 + 1 + 2 + 2)
    assert (again.snapshots_thinned, again.rows_deleted) == (0, 0)
    after = [live_scored(session, coll, since, **stream) for stream in streams]
    for old, new in zip(before, after, strict=True):
        assert len(old) > 0
        pd.testing.assert_frame_equal(old, new)
    thinned = session.exec(select(NowcastSnapshot.id).where(NowcastSnapshot.collection_id == coll.id,
                                                            NowcastSnapshot.rows_thinned_at.is_not(None))).all()
    assert sorted(thinned) == sorted([s1, s3, s4, h1, h2, superseded])


def dropping_replaced_listings_keeps_the_asks(session, coll) -> None:
    """Also run on PostgreSQL (tests/integration/test_retention.py)."""
    items_and_models(session, coll, ITEMS, versions=0)

    def event(event_id, item, source, days_ago, price):
        session.add(Listing(collection_id=coll.id, event_id=event_id, item_key=item, source=source,
                            ts=NOW - timedelta(days=days_ago), price=price, content_hash="0"))

    event("a-old", "1", "a", 40, 90.0)
    event("a-withdrawn", "1", "a", 35, None)  # replaced only after the window starts: kept
    event("a-new", "1", "a", 1, 80.0)
    event("b-old", "1", "b", 40, 60.0)
    event("b-new", "1", "b", 20, 65.0)
    event("only", "2", "a", 40, 70.0)  # replaced by nothing: still the offer
    session.commit()
    moments = [NOW - timedelta(days=14), NOW - timedelta(days=5), NOW]
    keys = np.array(["1", "2"], dtype=object)

    def asks():
        return [open_asks(load_listings(session, coll, m), keys, naive_utc_moment(m)) for m in moments]

    before = asks()
    first = apply_retention(session, coll, NOW, keep_days=14, max_rows=1)  # one event's worth: the oldest
    session.commit()
    after_first = set(session.exec(select(Listing.event_id).where(Listing.collection_id == coll.id)).all())
    rest = apply_retention(session, coll, NOW, keep_days=14)
    session.commit()

    left = sorted(session.exec(select(Listing.event_id).where(Listing.collection_id == coll.id)).all())
    assert first.listing_events_deleted == 1 and len(after_first) == 5 and rest.listing_events_deleted == 1
    assert left == ["a-new", "a-withdrawn", "b-new", "only"]
    for (price, listed), (price_after, listed_after) in zip(before, asks(), strict=True):
        np.testing.assert_array_equal(price, price_after)
        np.testing.assert_array_equal(listed, listed_after)
    assert before[0][0].tolist() == [65.0, 70.0]  # the window's first moment still reads b's offer


def test_the_published_snapshot_stays_whole_whatever_its_stamp(sqlite_market):
    """publish stamps published_at with the worker's clock: one running behind can stamp the new
    pointer before the snapshot it replaced, and it must stay whole all the same."""
    session, coll = sqlite_market
    (version,) = items_and_models(session, coll, ITEMS)
    at = OLD.replace(hour=10)
    thinned = _snapshot(session, coll, version, "published", at)
    pointer = _snapshot(session, coll, version, "published", at + timedelta(minutes=20))
    _snapshot(session, coll, version, "published", at + timedelta(minutes=30))  # the day's last
    session.add(PublishedSnapshot(collection_id=coll.id, snapshot_id=pointer, published_at=at))
    session.commit()

    report = apply_retention(session, coll, NOW, keep_days=14)

    assert report.snapshots_thinned == 1 and thinned not in _rows(session, coll)
    assert _rows(session, coll)[pointer] == ITEMS
