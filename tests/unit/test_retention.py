"""Retention on SQLite: old snapshots keep the rows their readers still need, and every sale the
track record or the monitor scores meets the same value after thinning as before; replaced
listing events go, and the asks of any moment from the window on stay as they were. Old webhook
deliveries and task runs go too, but never each task's last run, a running one, or a delivery a
copy of which could still pass the signature check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sqlmodel import select

from api import signing
from fairvalue.lifecycle import live_scored
from fairvalue.settings import Settings
from models.listings import open_asks
from models.times import naive_utc_moment
from storage.listings import ingest_listings
from storage.market import load_listings
from storage.retention import AuditWindow, apply_retention, prune_audit_records
from storage.runs import last_runs
from storage.tables import Listing, NowcastRow, NowcastSnapshot, PublishedSnapshot, Sale, TaskRun, WebhookDelivery
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
    # An ask is valued as a sale is (the ask track record); a withdrawal is no ask and keeps nothing.
    session.add(Listing(collection_id=coll.id, event_id="ask", item_key="1", source="a", price=80.0,
                        ts=at + timedelta(minutes=10), content_hash="0"))  # meets s1 and h1
    session.add(Listing(collection_id=coll.id, event_id="withdrawn", item_key="2", source="a", price=None,
                        ts=at + timedelta(minutes=70), content_hash="0"))  # would meet s3
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
    assert rows[s1] == ["1", "2"] and rows[h1] == ["1", "2"]
    assert rows[h2] == ["3"]  # e2, and e4 at s4's publication; the contender's next snapshot is h3
    assert rows[s3] == ["3"] and rows[s4] == ["1", "3"]  # e4 at s4's publication: either side keeps it
    for whole in (s2, s5, recent, current, h3):
        assert rows[whole] == ITEMS, whole
    assert superseded not in rows
    assert (first.snapshots_thinned, first.rows_deleted) == (1, 3)  # the oldest work first: the superseded one
    assert (rest.snapshots_thinned, rest.rows_deleted) == (5, 1 + 1 + 1 + 2 + 2)
    assert (again.snapshots_thinned, again.rows_deleted) == (0, 0)
    after = [live_scored(session, coll, since, **stream) for stream in streams]
    for old, new in zip(before, after, strict=True):
        assert len(old) > 0
        pd.testing.assert_frame_equal(old, new)
    thinned = session.exec(select(NowcastSnapshot.id).where(NowcastSnapshot.collection_id == coll.id,
                                                            NowcastSnapshot.rows_thinned_at.is_not(None))).all()
    assert sorted(thinned) == sorted([s1, s3, s4, h1, h2, superseded])


def test_replaced_listing_events_stay_for_the_ask_track_record_s_window(sqlite_market):
    session, coll = sqlite_market
    for event_id, days_ago, price in (("old", 60, 90.0), ("older", 100, 95.0), ("new", 20, 80.0)):
        session.add(Listing(collection_id=coll.id, event_id=event_id, item_key="1", source="a", price=price,
                            ts=NOW - timedelta(days=days_ago), content_hash="0"))
    session.commit()

    def dropped(listing_keep_days):
        return apply_retention(session, coll, NOW, keep_days=14,
                               listing_keep_days=listing_keep_days).listing_events_deleted

    assert dropped(90) == 0  # "older" was replaced 60 days ago: inside the 90
    assert dropped(50) == 1  # now it was replaced past the window; "old" only 20 days ago
    assert dropped(5) == 1  # the snapshots' 14 days bound it: "old" goes too
    assert session.exec(select(Listing.event_id).where(Listing.collection_id == coll.id)).all() == ["new"]


def test_a_dropped_listing_event_sent_again_changes_nothing(sqlite_market):
    a_dropped_listing_sent_again_changes_nothing(*sqlite_market)


def a_dropped_listing_sent_again_changes_nothing(session, coll) -> None:
    """A re-sent file or webhook call stored the events retention had dropped as new ones, until
    the next run dropped them again. Also run on PostgreSQL (tests/integration/test_retention.py)."""
    items_and_models(session, coll, ITEMS, versions=0)
    tag = uuid.uuid4().hex[:8]

    def event(name, days_ago, price):
        return {"event_id": f"{name}-{tag}", "item_id": "1", "source": "a", "price": price,
                "timestamp": (NOW - timedelta(days=days_ago)).isoformat()}

    old, new = event("old", 40, 90.0), event("new", 30, 80.0)
    assert ingest_listings(session, coll, [old, new], NOW).accepted == 2
    session.commit()
    assert apply_retention(session, coll, NOW, keep_days=14).listing_events_deleted == 1
    session.commit()

    again = ingest_listings(session, coll, [old, new], NOW)
    changed = ingest_listings(session, coll, [{**old, "price": 91.0}], NOW)
    session.commit()
    assert (again.accepted, again.duplicate, again.rejected) == (0, 2, 0)
    assert (changed.accepted, changed.duplicate, dict(changed.reasons)) == (0, 0, {"duplicate_event_conflict": 1})
    held = session.exec(select(Listing.event_id).where(Listing.collection_id == coll.id,
                                                       Listing.event_id.in_([old["event_id"], new["event_id"]]))).all()
    assert held == [new["event_id"]]



def test_a_dropped_listing_is_remembered_for_the_audit_window_then_forgotten(sqlite_market):
    """dropped_listings kept every dropped event's id for ever. It is forgotten once remembered
    longer than the audit window: sent again then, it is stored as new, and the next pass drops it
    again, so what is stored ends the same."""
    session, coll = sqlite_market
    items_and_models(session, coll, ITEMS, versions=0)
    tag = uuid.uuid4().hex[:8]
    old, new = ({"event_id": f"{name}-{tag}", "item_id": "1", "source": "a", "price": price,
                 "timestamp": (NOW - timedelta(days=days_ago)).isoformat()}
                for name, days_ago, price in (("old", 40, 90.0), ("new", 30, 80.0)))
    ingest_listings(session, coll, [old, new], NOW)
    window = AuditWindow(keep_days=90, webhook_tolerance_seconds=300)
    assert apply_retention(session, coll, NOW, keep_days=14, audit=window).listing_events_deleted == 1
    session.commit()

    def forgotten(days_later):
        return apply_retention(session, coll, NOW + timedelta(days=days_later), keep_days=14,
                               audit=window).dropped_listings_forgotten

    assert forgotten(89) == 0 and ingest_listings(session, coll, [old], NOW).duplicate == 1
    assert forgotten(91) == 1 and forgotten(92) == 0
    session.commit()
    assert ingest_listings(session, coll, [old], NOW + timedelta(days=91)).accepted == 1
    assert apply_retention(session, coll, NOW + timedelta(days=91), keep_days=14).listing_events_deleted == 1
    session.commit()
    held = session.exec(select(Listing.event_id).where(Listing.collection_id == coll.id,
                                                       Listing.event_id.in_([old["event_id"], new["event_id"]]))).all()
    assert held == [new["event_id"]]

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


def _delivery(session, received_at, accepted=False) -> int:
    row = WebhookDelivery(received_at=received_at, body_sha256="0" * 64, status_code=202 if accepted else 401,
                          outcome="accepted" if accepted else "stale",
                          accepted_signature=uuid.uuid4().hex if accepted else None)
    session.add(row)
    session.flush()
    return row.id


def _run(session, task_name, started_at, status="ok", collection=None) -> int:
    run = TaskRun(task_name=task_name, status=status, started_at=started_at, collection=collection)
    session.add(run)
    session.flush()
    return run.id


def test_old_deliveries_and_runs_go_but_each_task_s_last_run_and_running_ones_stay(sqlite_market):
    pruning_audit_records_keeps_the_last_runs(*sqlite_market, now=NOW)


def pruning_audit_records_keeps_the_last_runs(session, coll, now) -> None:
    """Also run on PostgreSQL (tests/integration/test_retention.py), where `now` is the clock's."""
    def ago(days):
        return now - timedelta(days=days)

    # Inserted out of age order: the oldest go first, not the first inserted.
    oldest_deliveries = [_delivery(session, ago(200), accepted=True)]
    old_delivery = _delivery(session, ago(91), accepted=True)
    oldest_deliveries.append(_delivery(session, ago(150)))
    kept_deliveries = [_delivery(session, ago(89), accepted=True), _delivery(session, now - timedelta(minutes=1))]
    often, rare, stuck = (f"test.audit.{name}" for name in ("often", "rare", "stuck"))
    # The last run of a task for another collection, however old, stays: the later runs of the same
    # task for no collection do not hide it.
    other = _run(session, often, ago(250), collection="test-audit-other")
    old_runs = [_run(session, often, ago(200))]
    oldest_runs = [_run(session, rare, ago(300))]
    old_runs.append(_run(session, often, ago(150), "failed"))
    oldest_runs.append(_run(session, stuck, ago(210)))
    old_runs.append(_run(session, often, ago(100)))
    kept = [_run(session, often, ago(1)),
            _run(session, rare, ago(120)),  # a rare task's last run, however old
            _run(session, stuck, ago(400), "running"),  # never finished: stays for someone to see
            _run(session, stuck, ago(10)), other]
    session.commit()
    mine = (often, rare, stuck)
    last_before = {key: run.id for key, run in last_runs(session).items() if key[0] in mine}
    assert (often, "test-audit-other") in last_before

    first = apply_retention(session, coll, now, keep_days=14, audit=AuditWindow(90, 300), max_audit_rows=2)
    session.commit()
    left_deliveries = set(session.exec(select(WebhookDelivery.id)).all())
    left_runs = set(session.exec(select(TaskRun.id).where(TaskRun.task_name.in_(mine))).all())
    rest = apply_retention(session, coll, now, keep_days=14, audit=AuditWindow(90, 300))
    session.commit()
    again = apply_retention(session, coll, now, keep_days=14, audit=AuditWindow(90, 300))
    session.commit()

    # The bound: two of each, the oldest first.
    assert (first.webhook_deliveries_deleted, first.task_runs_deleted) == (2, 2)
    assert not left_deliveries & set(oldest_deliveries) and old_delivery in left_deliveries
    assert left_runs == set(old_runs + kept)  # the 300- and 210-day-old runs went first
    assert (rest.webhook_deliveries_deleted, rest.task_runs_deleted) == (1, 3)
    assert (again.webhook_deliveries_deleted, again.task_runs_deleted) == (0, 0)
    assert first.as_dict()["task_runs_deleted"] == 2  # what the archive task records
    ids = set(oldest_deliveries + [old_delivery] + kept_deliveries)
    assert set(session.exec(select(WebhookDelivery.id).where(WebhookDelivery.id.in_(ids))).all()) == set(
        kept_deliveries)
    assert set(session.exec(select(TaskRun.id).where(TaskRun.task_name.in_(mine))).all()) == set(kept)
    assert {key: run.id for key, run in last_runs(session).items() if key[0] in mine} == last_before


def test_a_delivery_that_could_still_be_replayed_is_never_pruned(sqlite_market):
    """A copy of a delivery passes the timestamp check (and only then does its accepted
    signature refuse it) until 2 x the tolerance after it was received: a tolerance set longer
    than the audit window holds the cutoff back."""
    session, _ = sqlite_market
    tolerance = 3 * 86400
    received = NOW - timedelta(days=5)
    t, body = int((received + timedelta(seconds=tolerance)).timestamp()), b"{}"  # the latest t accepted then
    header = f"t={t},v1={signing.compute('secret', t, body)}"
    last_chance = (received + timedelta(seconds=2 * tolerance)).timestamp()
    assert signing.verify(header, body, "secret", tolerance, now=last_chance) == t
    with pytest.raises(signing.SignatureError) as stale:
        signing.verify(header, body, "secret", tolerance, now=last_chance + 1)
    assert stale.value.kind == "stale"
    replayable = _delivery(session, received, accepted=True)
    _delivery(session, NOW - timedelta(days=7), accepted=True)  # past 2 x 3 days and the clock slack
    session.commit()

    assert prune_audit_records(session, NOW, keep_days=1, webhook_tolerance_seconds=tolerance) == (1, 0)
    assert session.exec(select(WebhookDelivery.id)).all() == [replayable]


def test_the_audit_window_defaults_to_90_days_and_is_a_day_at_least(sqlite_market, monkeypatch):
    assert Settings(_env_file=None).audit_retention_days == 90
    for bad in (0, 0.5, 36501):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, audit_retention_days=bad)
    session, coll = sqlite_market
    _run(session, "test.audit.job", NOW - timedelta(days=40))
    _run(session, "test.audit.job", NOW - timedelta(days=20))
    session.commit()
    monkeypatch.setenv("FAIRVALUE_AUDIT_RETENTION_DAYS", "30")
    settings = Settings(_env_file=None)
    window = AuditWindow(settings.audit_retention_days, settings.webhook_tolerance_seconds)

    assert apply_retention(session, coll, NOW, keep_days=14).task_runs_deleted == 0  # no window: not pruned
    assert apply_retention(session, coll, NOW, keep_days=14, audit=window).task_runs_deleted == 1  # 30 days
