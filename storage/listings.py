"""Listing events: stored once per event id, refused rows kept with why (storage.market reads
them back for a nowcast).

The write path mirrors the sales' (storage/ingest.py): an event id already stored with the same
content is a duplicate, with other content a conflict kept in rejected_listings, so sending a
batch again changes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from models.listings import CleanListing, validate_listings
from models.validation import item_key_of
from storage.ingest import IngestReport, known_item_keys, store_validated
from storage.tables import Collection, DroppedListing, Listing, RejectedListing, utcnow
from storage.upsert import insert_ignoring_conflicts

ORIGIN = "webhook:listings"


def ingest_listings(session: Session, collection: Collection, rows: Iterable[Mapping[str, Any]], now: datetime,
                    origin: str = ORIGIN) -> IngestReport:
    """Validate and store listing events in the caller's transaction (the caller commits). An event
    retention dropped (storage.retention) was stored once: it is not inserted again, and its
    remembered content tells a duplicate from a conflict, as a held one's does."""
    rows = list(rows)
    # A key with NUL is refused by validation (no text column holds NUL) and must not reach the look-up.
    named = {key for key in (item_key_of(row) for row in rows if isinstance(row, Mapping)) if "\x00" not in key}
    batch = validate_listings(rows, known_item_keys(session, collection, named), now, collection.first_day)
    dropped = _dropped_hashes(session, collection, [x.event_id for x in batch.clean])  # one look-up per batch

    def insert(session: Session, collection: Collection, listings: list[CleanListing]) -> set[str]:
        return _insert(session, collection, [x for x in listings if x.event_id not in dropped])

    def stored_hashes(session: Session, collection: Collection, event_ids: list[str]) -> dict[str, str]:
        return {**{i: dropped[i] for i in event_ids if i in dropped}, **_held_hashes(session, collection, event_ids)}

    return store_validated(session, collection, batch, origin, insert=insert, stored_hashes=stored_hashes,
                           rejected_table=RejectedListing)


def _insert(session: Session, collection: Collection, listings: list[CleanListing]) -> set[str]:
    """Insert listing events, skipping event ids already stored; return the event ids inserted."""
    now = utcnow()
    return set(insert_ignoring_conflicts(session, Listing.__table__, [
        {"collection_id": collection.id, "event_id": x.event_id, "item_key": x.item_key, "ts": x.ts,
         "price": x.price, "expires_at": x.expires_at, "source": x.source, "content_hash": x.content_hash,
         "ingested_at": now} for x in listings], returning="event_id"))


def _held_hashes(session: Session, collection: Collection, event_ids: list[str]) -> dict[str, str]:
    if not event_ids:
        return {}
    return dict(session.execute(select(Listing.event_id, Listing.content_hash).where(
        Listing.collection_id == collection.id, Listing.event_id.in_(event_ids))).all())


def _dropped_hashes(session: Session, collection: Collection, event_ids: list[str]) -> dict[str, str]:
    """The content of each of these events that retention dropped."""
    if not event_ids:
        return {}
    return dict(session.execute(select(DroppedListing.event_id, DroppedListing.content_hash).where(
        DroppedListing.collection_id == collection.id, DroppedListing.event_id.in_(event_ids))).all())


def listing_counts(session: Session, collection: Collection) -> tuple[int, dict[str, int]]:
    """The listing events stored and the refused ones kept, by reason."""
    stored = session.execute(select(func.count()).select_from(Listing)
                             .where(Listing.collection_id == collection.id)).scalar_one()
    refused = session.execute(select(RejectedListing.reason, func.count())
                              .where(RejectedListing.collection_id == collection.id)
                              .group_by(RejectedListing.reason)).all()
    return stored, dict(refused)
