"""Retention: what old snapshots and listing events keep.

Each nowcast writes one row per item (the bundled market: 10,000 every 30 minutes, 480,000 a
day), and every change of an offer is a listing event. Neither may grow without bound, and
neither may lose what a reader still needs. Past `FAIRVALUE_RETENTION_DAYS`:

- A **published snapshot**, once archived (the store holds all of it as csv.gz), keeps the rows
  something still reads. The last snapshot published each UTC day keeps every row, so an item's
  history keeps one value a day. Any other keeps the rows of the items that sold, or were
  offered (a priced listing event), while it was the one published: the track record and the
  monitor score each sale, and the ask track record each ask, against the last snapshot
  published before it (models/live.py, fairvalue/signal_record.py). The published snapshot is never touched, nor
  are the published snapshots of a daily-priced collection (it publishes about one a day, and
  its track record reads each card-day's first snapshot: fairvalue/kinds.py).
- A **shadow snapshot** (a model watched beside the champion, never published) is thinned the
  same way, archived or not (it never is): only the monitor's scoring reads it.
- A **snapshot never published** (superseded by a later moment, or a nowcast that failed)
  loses its rows: nothing ever served them.
- A **listing event** that a later event of the same item and source, also past the window,
  replaced is dropped: from the window on it can be no nowcast's offer (models/listings.py).
  Its window is the longer of this one and `FAIRVALUE_LISTING_RETENTION_DAYS` (90): until then
  the ask track record (`/performance` `ask_signals`) still judges it. Its id and content stay
  in `dropped_listings`, so the same event sent again is a duplicate and is not stored anew,
  for as long as the service's own records are kept (below): the ids would otherwise pile up
  for ever. Sent again after that, it is stored as new and the next pass drops it again.

What is thinned is stated on the snapshot (`rows_thinned_at`). A nowcast asked for a moment
before the window (`fairvalue nowcast --as-of`) reads the thinned listing book, and a sale stored
later for a moment before the window finds no value to be scored against: the track record
counts it as `no_row`. One call deletes from about 2 million rows' worth of snapshots and a
bounded number of listing events, so a backlog drains over a few hourly runs and no run holds a
long transaction.

The service's own records are pruned in the same pass, whatever the collection: a **webhook
delivery** received and a **task run** started more than `FAIRVALUE_AUDIT_RETENTION_DAYS` ago
are deleted (and the collection's **dropped listings** remembered longer than that), oldest
first and a bounded number of each per call. A task's latest run for each collection stays
whatever its age (the status and queue pages show it as the task's last: storage/runs.py
`last_runs`), and so does a run still `running` (the hourly training sweep marks one whose
worker died under it `abandoned`, hours after it started: fairvalue/lifecycle/sweep.py
`abandon_stale_runs`; then it is pruned like any other). The first collection's hourly pass usually
prunes everything due; the next ones find nothing left, or take the rest of a backlog.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import delete, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from storage import snapshots
from storage.ingest import DAILY_PRICES
from storage.runs import RUNNING, latest_run_ids
from storage.tables import (
    Collection,
    DroppedListing,
    Listing,
    NowcastRow,
    NowcastSnapshot,
    PublishedSnapshot,
    Sale,
    TaskRun,
    WebhookDelivery,
)
from storage.upsert import insert_ignoring_conflicts

NEVER_PUBLISHED = (snapshots.SUPERSEDED, snapshots.FAILED, snapshots.BUILDING)
# A shadow carries the published_at of the champion's snapshot beside it.
SCORED = (snapshots.PUBLISHED, snapshots.SHADOW)
AUDIT_BATCH = 50_000  # webhook deliveries, and task runs, deleted per call at most
# Replay protection: a delivery's accepted_signature matters only while a copy of it can pass the
# signature's timestamp check. api/signing.verify refuses a t more than the tolerance from its clock
# as stale (401) before api/webhooks.py looks the signature up (the look-up then only names the
# refusal a replay), and the delivery was accepted with t at most the tolerance after it was
# received: from received_at + 2 x tolerance on (10 minutes at the default 300 s) no copy passes.
# Whatever the settings, the cutoff stays that far back and an hour more for skewed clocks.
REPLAY_CLOCK_SLACK = timedelta(hours=1)


@dataclass
class RetentionReport:
    snapshots_thinned: int = 0
    rows_deleted: int = 0
    listing_events_deleted: int = 0
    webhook_deliveries_deleted: int = 0
    task_runs_deleted: int = 0
    dropped_listings_forgotten: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class AuditWindow:
    """How long the service's own records are kept (FAIRVALUE_AUDIT_RETENTION_DAYS), and the
    webhook signature tolerance that bounds how young a pruned delivery may be."""

    keep_days: float
    webhook_tolerance_seconds: int


def apply_retention(session: Session, collection: Collection, now: datetime, keep_days: float,
                    max_rows: int = 2_000_000, *, listing_keep_days: float | None = None,
                    audit: AuditWindow | None = None, max_audit_rows: int = AUDIT_BATCH) -> RetentionReport:
    """Thin what is older than `keep_days` before `now` (the module's rules), in the caller's
    transaction: the never-published snapshots, then the others oldest first, as many as hold
    about `max_rows` rows (one at least), then as many replaced listing events older than
    `listing_keep_days` too (None: `keep_days`) as the rows left (a tenth of `max_rows` at
    least), so one call stays a short transaction whatever the
    collection's size; the next call goes on. Then, given an `audit` window, up to
    `max_audit_rows` webhook deliveries and as many task runs older than it (prune_audit_records),
    and as many of the collection's dropped listings remembered since before it."""
    cutoff = now - timedelta(days=keep_days)
    report = RetentionReport()
    budget = max_rows
    for snapshot_id, n_items, kept_sales in _snapshots_to_thin(session, collection, cutoff):
        if budget <= 0:
            break
        budget -= n_items
        rows = delete(NowcastRow.__table__).where(NowcastRow.snapshot_id == snapshot_id)
        if kept_sales is not None:
            sold_from, sold_to = kept_sales
            rows = rows.where(NowcastRow.item_key.not_in(select(Sale.item_key).where(
                Sale.collection_id == collection.id, Sale.ts >= sold_from, Sale.ts <= sold_to)),
                # The ask track record values each ask as each sale (fairvalue/signal_record.py).
                NowcastRow.item_key.not_in(select(Listing.item_key).where(
                    Listing.collection_id == collection.id, Listing.price.is_not(None), Listing.ts >= sold_from,
                    Listing.ts <= sold_to)))
        report.rows_deleted += session.execute(rows).rowcount
        session.execute(update(NowcastSnapshot.__table__).where(NowcastSnapshot.id == snapshot_id)
                        .values(rows_thinned_at=now))
        report.snapshots_thinned += 1
    # The listings get what the snapshots left of the budget, and a tenth of it at least.
    listing_cutoff = now - timedelta(days=listings_kept_days(keep_days, listing_keep_days))
    report.listing_events_deleted = _drop_replaced_listings(session, collection, listing_cutoff,
                                                            max(budget, max_rows // 10), now)
    if audit is not None:
        report.webhook_deliveries_deleted, report.task_runs_deleted = prune_audit_records(
            session, now, audit.keep_days, audit.webhook_tolerance_seconds, max_audit_rows)
        report.dropped_listings_forgotten = _forget_dropped_listings(
            session, collection, now - timedelta(days=audit.keep_days), max_audit_rows)
    return report


def listings_kept_days(keep_days: float, listing_keep_days: float | None = None) -> float:
    """Every listing event younger than this is still stored: apply_retention drops a replaced one
    only past both the snapshots' window and the listings' own (None: the snapshots')."""
    return keep_days if listing_keep_days is None else max(keep_days, listing_keep_days)


def prune_audit_records(session: Session, now: datetime, keep_days: float, webhook_tolerance_seconds: int,
                        limit: int = AUDIT_BATCH) -> tuple[int, int]:
    """(webhook deliveries, task runs) deleted, in the caller's transaction: up to `limit` of each
    older than `keep_days` before `now`, the oldest first. A delivery a copy of which could still
    pass the signature check stays (REPLAY_CLOCK_SLACK), as do each task's latest run for each
    collection (storage/runs.py `latest_run_ids`, what `last_runs` reads) and every run still running."""
    cutoff = now - timedelta(days=keep_days)
    deliveries = WebhookDelivery.__table__
    replayable_since = now - timedelta(seconds=2 * max(webhook_tolerance_seconds, 0)) - REPLAY_CLOCK_SLACK
    n_deliveries = _delete_oldest(session, deliveries, deliveries.c.received_at, limit,
                                  deliveries.c.received_at < min(cutoff, replayable_since))
    runs = TaskRun.__table__
    n_runs = _delete_oldest(session, runs, runs.c.started_at, limit, runs.c.started_at < cutoff,
                            runs.c.status != RUNNING, runs.c.id.not_in(latest_run_ids().correlate(None)))
    return n_deliveries, n_runs


def _delete_oldest(session: Session, table, at, limit: int, *where) -> int:
    """Delete up to `limit` rows of `table` matching `where`, the oldest by the column `at` first
    (the id breaks ties); the rows deleted."""
    oldest = select(table.c.id).where(*where).order_by(at, table.c.id).limit(limit).correlate(None)
    return session.execute(delete(table).where(table.c.id.in_(oldest))).rowcount


def _snapshots_to_thin(session: Session, collection: Collection, cutoff: datetime
                       ) -> list[tuple[int, int, tuple[datetime, datetime] | None]]:
    """(snapshot id, its rows, the span whose sales keep their item's row or None to drop every
    row), oldest first. A snapshot's values are read by each sequence of snapshots a scorer walks
    (models/live.py pairs a sale with the sequence's last one published before it): the published
    ones (the track record), and one model version's of the snapshot's status, or of published and
    shadow together (the monitor: fairvalue/lifecycle/monitor.py). Its span runs from its publication to
    the latest next publication among those sequences, ends included; the last of any sequence is
    kept whole."""
    never_published = session.execute(
        select(NowcastSnapshot.id, NowcastSnapshot.n_items)
        .where(NowcastSnapshot.collection_id == collection.id, NowcastSnapshot.status.in_(NEVER_PUBLISHED),
               NowcastSnapshot.created_at < cutoff, NowcastSnapshot.rows_thinned_at.is_(None))
        .order_by(NowcastSnapshot.id)).all()
    work: list[tuple[int, int, tuple[datetime, datetime] | None]] = [(i, n, None) for i, n in never_published]
    if collection.kind == DAILY_PRICES:
        return work
    scored = pd.DataFrame(session.execute(
        select(NowcastSnapshot.id, NowcastSnapshot.n_items, NowcastSnapshot.status, NowcastSnapshot.model_version_id,
               NowcastSnapshot.published_at, NowcastSnapshot.archive_uri, NowcastSnapshot.rows_thinned_at)
        .where(NowcastSnapshot.collection_id == collection.id, NowcastSnapshot.status.in_(SCORED),
               NowcastSnapshot.published_at.is_not(None))
        .order_by(NowcastSnapshot.published_at, NowcastSnapshot.id)).all(),
        columns=["id", "n_items", "status", "version", "published_at", "archive_uri", "rows_thinned_at"])
    if scored.empty:
        return work
    at = scored["published_at"] = pd.to_datetime(scored["published_at"], utc=True)
    is_published = scored["status"] == snapshots.PUBLISHED
    # The next publication of each sequence that reads the snapshot; NaT where it is that sequence's last.
    next_of_status = scored.groupby(["status", "version"])["published_at"].shift(-1)
    next_of_version = scored.groupby("version")["published_at"].shift(-1)
    next_published = at[is_published].shift(-1).reindex(scored.index)
    nexts = pd.concat([next_of_status, next_of_version, next_published.where(is_published, next_of_version)], axis=1)
    day = at[is_published].dt.date
    last_of_day = (day != day.shift(-1)).reindex(scored.index, fill_value=False)
    # The pointer is the last published by its moment, but publish stamps published_at with the
    # worker's clock: one running behind could stamp it before the snapshot it replaced.
    pointer = session.execute(select(PublishedSnapshot.snapshot_id)
                              .where(PublishedSnapshot.collection_id == collection.id)).scalar()
    thin = scored[(at < cutoff) & scored["rows_thinned_at"].isna() & nexts.notna().all(axis=1)
                  & (scored["archive_uri"].notna() | ~is_published) & ~last_of_day & scored["id"].ne(pointer)]
    span_end = nexts.max(axis=1)
    work += [(int(row.id), int(row.n_items), (row.published_at.to_pydatetime(), span_end[i].to_pydatetime()))
             for i, row in thin.iterrows()]
    return work


def _drop_replaced_listings(session: Session, collection: Collection, cutoff: datetime, limit: int,
                            now: datetime) -> int:
    """Up to `limit` listing events before `cutoff` that a later event of the same item and
    source, also before it, replaced: a nowcast at or after `cutoff` reads that later one (or a
    later still). The oldest go first; the next call takes the rest. Each is remembered as dropped
    at `now`, the time the pass runs as (the audit window counts from it)."""
    later = aliased(Listing)
    replaced = (select(later.id).where(later.collection_id == Listing.collection_id,
                                       later.item_key == Listing.item_key, later.source == Listing.source,
                                       later.ts > Listing.ts, later.ts < cutoff)
                .correlate(Listing).exists())
    oldest = session.execute(
        select(Listing.id, Listing.event_id, Listing.content_hash)
        .where(Listing.collection_id == collection.id, Listing.ts < cutoff, replaced)
        .order_by(Listing.ts, Listing.id).limit(limit)).all()
    if not oldest:
        return 0
    # Remembered first, in the same transaction: the same event sent again stays a duplicate.
    insert_ignoring_conflicts(session, DroppedListing.__table__, [
        {"collection_id": collection.id, "event_id": event_id, "content_hash": content_hash, "dropped_at": now}
        for _, event_id, content_hash in oldest])
    return session.execute(delete(Listing).where(Listing.id.in_([row_id for row_id, _, _ in oldest]))).rowcount


def _forget_dropped_listings(session: Session, collection: Collection, cutoff: datetime, limit: int) -> int:
    """Up to `limit` of the collection's dropped listings dropped before `cutoff`, the oldest first."""
    table = DroppedListing.__table__
    return _delete_oldest(session, table, table.c.dropped_at, limit, table.c.collection_id == collection.id,
                          table.c.dropped_at < cutoff)
