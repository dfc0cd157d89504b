"""The published snapshot held in the API process (fairvalue/item_reads.py): answers without a
database statement, the same bytes the database path gives, and fresh within the bound."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pandas as pd
import pytest
from sqlalchemy import event

from fairvalue import item_reads
from fairvalue.settings import get_settings
from storage import snapshots
from storage.db import get_engine, session_scope
from storage.ingest import ensure_collection
from storage.snapshots import publish, published_snapshot, write_snapshot
from storage.tables import NowcastSnapshot
from tests.realparts import no_other_nowcast_pending, wait_for

pytestmark = pytest.mark.integration
BULK = "/v1/valuations?ids=7804,1,2,nope,3"


@contextmanager
def counted_statements():
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def test_a_held_snapshot_answers_without_a_database_statement(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_snapshot_check_seconds", 60.0)
    client.get("/v1/items/7804")  # loads the snapshot if it is not held yet
    with counted_statements() as statements:
        item = client.get("/v1/items/7804")
        bulk = client.get(BULK)
    assert item.status_code == bulk.status_code == 200
    assert statements == []
    assert [v["item_id"] for v in bulk.json()["valuations"]] == ["7804", "1", "2", "3"]
    assert bulk.json()["not_found"] == ["nope"]


def test_held_answers_are_the_database_answers_byte_for_byte(client):
    with session_scope() as session:
        snap = published_snapshot(session, ensure_collection(session, "cryptopunks"))
        sold = session.exec(snapshots.select(snapshots.NowcastRow.item_key).where(
            snapshots.NowcastRow.snapshot_id == snap.id, snapshots.NowcastRow.last_price.is_not(None))).first()
    keys = ["7804", sold, "1", "nope", "2"]
    for key in (k for k in keys if k != "nope"):
        assert client.get(f"/v1/items/{key}").content == item_reads._item_from_database("cryptopunks", key).body
    held = client.get("/v1/valuations?ids=" + ",".join(keys))
    assert held.content == item_reads._valuations_from_database("cryptopunks", keys).body
    assert held.headers["content-type"] == "application/json"


def _marker_snapshot(fair_value: float) -> NowcastSnapshot:
    """A built, unpublished snapshot of the punks whose every value is `fair_value`, of the same
    moment as the published one (publish refuses to move the pointer backwards)."""
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        current = published_snapshot(session, coll)
        values = pd.DataFrame({"item_key": [str(i) for i in range(10_000)], "fair_value": fair_value,
                               "p10": fair_value, "p90": fair_value, "signal": "HOLD", "last_price": None,
                               "last_sale_at": pd.NaT})
        return write_snapshot(session, coll, current.model_version_id, current.as_of, None, values)


def _publish(snapshot_id: int) -> None:
    with session_scope() as session:
        assert publish(session, ensure_collection(session, "cryptopunks"), session.get(NowcastSnapshot, snapshot_id))


@pytest.fixture(scope="module")
def no_nowcast_pending(seeded, broker):
    """The tests below publish a marker of the same moment as the published snapshot: a follow-up
    nowcast an earlier file left queued or held would publish over it in the middle of a test.
    Nothing in this file asks for a nowcast, so once is enough."""
    wait_for(no_other_nowcast_pending, timeout=120)


@pytest.fixture
def restore_published(no_nowcast_pending):
    with session_scope() as session:
        before = published_snapshot(session, ensure_collection(session, "cryptopunks")).id
    yield
    _publish(before)
    item_reads.PUBLISHED.invalidate()  # a test may have silenced the publish listeners: drop what it held


def test_a_publish_by_another_process_is_served_within_the_check_interval(client, restore_published, monkeypatch):
    """The held snapshot answers until the interval has passed since its pointer was read, then the
    new one does. On the cache's own clock, moved by hand: a loaded host cannot make either read
    land on the other side of the interval (it could with time.sleep against the wall clock)."""
    interval = 10.0
    monkeypatch.setattr(get_settings(), "api_snapshot_check_seconds", interval)
    now = [time.monotonic()]
    monkeypatch.setattr(item_reads.PUBLISHED, "_clock", lambda: now[0])
    item_reads.PUBLISHED.invalidate()  # the pointer is read at `now` by the next read
    held = client.get("/v1/items/7804").json()["snapshot"]["id"]
    marker = _marker_snapshot(1234.5)
    monkeypatch.setattr(snapshots, "publish_listeners", [])  # as a worker process would: nobody here is told
    _publish(marker.id)
    now[0] += interval * 0.4  # within the interval, and before its half (no check ahead starts)
    assert client.get("/v1/items/7804").json()["snapshot"]["id"] == held
    now[0] += interval * 0.6  # the interval has passed: this read checks the pointer
    body = client.get("/v1/items/7804").json()
    assert (body["snapshot"]["id"], body["fair_value"]) == (marker.id, 1234.5)


def test_a_publish_in_the_api_process_is_served_at_once(client, restore_published, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_snapshot_check_seconds", 3600.0)
    client.get("/v1/items/7804")
    marker = _marker_snapshot(4321.5)
    _publish(marker.id)
    body = client.get("/v1/valuations?ids=7804,1").json()
    assert body["snapshot"]["id"] == marker.id and {v["fair_value"] for v in body["valuations"]} == {4321.5}


def test_a_republished_snapshot_is_served_with_its_new_publication_time(client, restore_published, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_snapshot_check_seconds", 0.0)
    monkeypatch.setattr(snapshots, "publish_listeners", [])
    original = client.get("/v1/items/7804").json()["snapshot"]
    _publish(_marker_snapshot(99.0).id)
    _publish(original["id"])  # the same snapshot again: same id, a new published_at
    again = client.get("/v1/items/7804").json()["snapshot"]
    assert again["id"] == original["id"] and again["published_at"] > original["published_at"]


def test_too_big_to_hold_goes_to_the_database(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_snapshot_cache_max_items", 10)
    item_reads.PUBLISHED.invalidate()
    try:
        with counted_statements() as statements:
            body = client.get("/v1/items/7804").json()
        assert body["item_id"] == "7804" and len(statements) >= 2  # the pointer, then the item itself
    finally:
        item_reads.PUBLISHED.invalidate()
