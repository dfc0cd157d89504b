"""The fast ingest paths against real PostgreSQL: a large batch's sales not stored yet are COPYed
straight into `sales`, falling back to a staged INSERT with ON CONFLICT when a concurrent writer
stored one meanwhile, so a resend and a concurrent writer of the same ids store each sale once; a
webhook call reads only the floors of its own days."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from fairvalue import pipeline
from fairvalue.settings import get_settings
from models.validation import validate_batch
from storage import ingest as ingest_store
from storage.db import session_scope
from storage.tables import Sale
from tests.realparts import waits_on_a_lock

pytestmark = pytest.mark.integration


def _sales(prefix: str, n: int) -> list[dict]:
    start = datetime(2021, 12, 1, tzinfo=UTC)
    return [{"event_id": f"{prefix}-{i}", "timestamp": (start + timedelta(minutes=i)).isoformat(),
             "punk_id": str(i % 10_000), "price_eth": 90.0 + i % 7, "source": "test"} for i in range(n)]


def _stored(prefix: str) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Sale).where(Sale.event_id.like(f"{prefix}-%"))).one()


def test_a_large_batch_is_stored_once_and_its_resend_is_all_duplicates(seeded):
    rows = _sales("copy-path", 3000)
    first = pipeline.ingest_sales_rows(iter(rows), "test", batch_size=1000)
    again = pipeline.ingest_sales_rows(iter(rows), "test", batch_size=1000)
    assert (first.accepted, first.duplicate, first.rejected) == (3000, 0, 0)
    assert (again.accepted, again.duplicate, again.rejected) == (0, 3000, 0)
    assert _stored("copy-path") == 3000


def test_a_batch_partly_stored_copies_only_its_new_sales_in_the_callers_transaction(seeded):
    """The rows a batch does not hold yet are written by one COPY in a savepoint: the stored ones
    are duplicates, and each new row records the caller's (top-level) transaction, as an INSERT does."""
    rows = _sales("partly", 400)
    pipeline.ingest_sales_rows(rows[:150], "test")
    settings = get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        batch = validate_batch(rows, ingest_store.known_item_keys(session, coll), ingest_store.floor_lookup(
            session, coll), settings.min_floor_fraction)
        report = ingest_store.store_validated(session, coll, batch, "test")
        xact = session.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
        recorded = set(session.exec(select(Sale.stored_xact).where(Sale.event_id.in_(report.accepted_event_ids))))
    assert (report.accepted, report.duplicate, report.rejected) == (250, 150, 0)
    assert sorted(report.accepted_event_ids) == sorted(f"partly-{i}" for i in range(150, 400))
    assert recorded == {xact}
    assert _stored("partly") == 400


def test_a_concurrent_writer_of_the_same_id_stores_it_once(seeded):
    """Writer A holds an uncommitted insert of one id of B's batch. B's COPY waits on that key; A
    commits, B's COPY fails and B inserts with ON CONFLICT, skipping it: everything is stored once,
    A's row counts as B's duplicate."""
    settings = get_settings()
    rows = _sales("race", 500)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        known = ingest_store.known_item_keys(session, coll)
        floors = ingest_store.floor_lookup(session, coll)
    batch = validate_batch(rows, known, floors, settings.min_floor_fraction)
    contested = next(s for s in batch.clean if s.event_id == "race-250")
    outcome: dict = {}

    def writer_b():
        with session_scope() as session:
            outcome["pid"] = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            outcome["report"] = ingest_store.store_validated(session, coll, batch, "writer-b")

    with session_scope() as session_a:
        ingest_store.store_validated(session_a, coll, validate_batch([rows[250]], known, floors, 0.2), "writer-a")
        b = threading.Thread(target=writer_b)
        b.start()
        # A commits only once B waits on its key: a B that read the stored ids after A's commit
        # would count the id a duplicate without the COPY ever meeting A's row.
        assert waits_on_a_lock(lambda: outcome.get("pid")), "writer B never waited on writer A's key"
        assert b.is_alive()
    b.join(timeout=60)
    report = outcome["report"]
    assert (report.accepted, report.duplicate, report.rejected) == (499, 1, 0)
    assert _stored("race") == 500
    with session_scope() as session:
        stored = session.exec(select(Sale.content_hash).where(Sale.event_id == "race-250")).one()
    assert stored == contested.content_hash


def test_a_webhook_reads_the_floor_known_before_its_days(seeded):
    """The per-day look-up agrees with the whole series, gaps in the floor column included."""
    settings = get_settings()
    days = [date(2017, 6, 23), date(2018, 8, 14), date(2019, 3, 2), date(2020, 12, 11), date(2021, 12, 31),
            date(2030, 1, 1), date(2000, 1, 1)]
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        whole = ingest_store.floor_lookup(session, coll)
        per_day = ingest_store.floor_lookup(session, coll, days)
    assert [per_day.before(d) for d in days] == [whole.before(d) for d in days]
    assert per_day.before(date(2000, 1, 1)) is None and per_day.before(date(2030, 1, 1)) is not None
    assert per_day.before(date(2017, 6, 23)) is None  # the first floor's own day: nothing known before it



def test_a_refused_event_is_left_out_of_reports_once_and_a_stored_one_never(seeded):
    """What replay reports as filtered out (storage.market.load_excluded): a price-0 event sent in
    two shapes is kept twice but is one event; a conflicting report of a stored sale is refused
    but the sale is scored."""
    from storage.market import load_excluded

    tag = time.time_ns()
    when = "2021-12-30T12:00:00Z"
    stored = {"event_id": f"ex-stored-{tag}", "timestamp": when, "punk_id": "5", "price_eth": 70}
    zero = {"event_id": f"ex-zero-{tag}", "timestamp": when, "punk_id": "6", "price_eth": 0}
    pipeline.ingest_sales_rows([stored, zero], "test")
    report = pipeline.ingest_sales_rows([{**stored, "price_eth": 71}, {**zero, "price_eth": "0.0"}], "test")
    assert report.rejected == 2 and report.rejected_kept_before == 0  # new shapes: kept again
    with session_scope() as session:
        excluded = load_excluded(session, pipeline.ensure_collection_of(session, get_settings()))
    mine = excluded[excluded["event_id"].str.endswith(str(tag))]
    assert mine["event_id"].tolist() == [f"ex-zero-{tag}"]
