"""Many webhook calls in one transaction, with set-based statements (group commit).

One round trip for the look-ups (replay check for every digest, collection, known items, the
floor of every day), one insert of the claimed sales, one look-up of the event ids that were already stored, one insert
of the rejections and one of the delivery records: the same ~8 statements for a batch as for a
single call (bench/ingest.py). What each call is told is decided by storage/webhook_batch.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from sqlmodel import Session

from models.validation import FloorLookup, item_key_of, sale_day_of, validate_batch
from storage import ingest as ingest_store
from storage import listings as listings_store
from storage import webhook_batch as batch_rules
from storage import webhooks as deliveries
from storage.pipelined import run_together
from storage.tables import Collection, utcnow
from storage.webhook_batch import CallOutcome, WebhookCall

ORIGIN = "webhook"


def _day(value: date | str | None) -> date | None:
    """A DATE column as the plain SQL look-up returns it: a date (PostgreSQL), text (SQLite)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def ingest_calls(session: Session, collection_slug: str, calls: Sequence[WebhookCall],
                 min_floor_fraction: float) -> list[CallOutcome]:
    """Each call's outcome, in the caller's transaction; the caller commits."""
    received_at = utcnow()
    rows = [row for call in calls for row in call.sales if isinstance(row, dict)]
    # A key with NUL is refused by validation (no text column holds NUL), and must not reach the look-up.
    keys = {key for key in map(item_key_of, rows) if "\x00" not in key}
    days = {d for d in map(sale_day_of, rows) if d is not None}
    # The look-ups go out in one round trip (storage/pipelined.py). They cover every call, the
    # replays included: a replay is rare, and leaving it out would cost a round trip first.
    # On PostgreSQL the deliveries' locks go first, so the replay check sees a concurrent twin's record.
    digests = sorted({c.digest for c in calls})
    dialect = session.get_bind().dialect.name
    postgres = dialect == "postgresql"
    locked = [(deliveries.LOCK_DELIVERIES, {"digests": digests})] if postgres else []
    looked_up = run_together(session, [
        *locked,
        (deliveries.ACCEPTANCES, {"digests": digests}),
        (ingest_store.COLLECTION_ID, {"slug": collection_slug}),
        (ingest_store.KNOWN_AMONG[dialect],
         {"slug": collection_slug, "keys": sorted(keys) or [""]}),
        *([(ingest_store.FLOORS_BEFORE, {"slug": collection_slug, "days": sorted(days)})]
          if days and postgres else []),
    ])[len(locked):]
    accepted, found_collection, known = looked_up[0], looked_up[1], {key for (key,) in looked_up[2]}
    collection = ingest_store.ensure_collection(session, collection_slug) if not found_collection \
        else Collection(id=found_collection[0][0], slug=collection_slug, first_day=_day(found_collection[0][1]))
    floors = FloorLookup(dict(looked_up[3])) if len(looked_up) > 3 else \
        ingest_store.floor_lookup(session, collection, days)

    replayed = batch_rules.replays(calls, {digest: at.astimezone(UTC) for digest, at in accepted}, received_at)
    live = [call for i, call in enumerate(calls) if i not in replayed]
    now = datetime.now(UTC)
    validated = [validate_batch(call.sales, known, floors, min_floor_fraction, now, collection.first_day)
                 for call in live]

    claims = batch_rules.first_claims(validated)
    claimed = batch_rules.claimed_sales(validated, claims)
    inserted = ingest_store.insert_sales(session, collection, claimed)
    stored_hash = ingest_store.stored_content_hashes(
        session, collection, [s.event_id for s in claimed if s.event_id not in inserted])
    stored_hash.update((s.event_id, s.content_hash) for s in claimed if s.event_id in inserted)
    settled = batch_rules.settle(validated, claims, inserted, stored_hash)

    kept_now = ingest_store.keep_rejections(session, collection, [r for s in settled for r in s.rejections], ORIGIN)
    batch_rules.count_kept_before(settled, kept_now)
    deliveries.record_all(session, [_delivery(call, settled_call.report, received_at)
                                    for call, settled_call in zip(live, settled, strict=True)])

    reports = iter(s.report for s in settled)
    return [CallOutcome(accepted_before=replayed[i]) if i in replayed else CallOutcome(report=next(reports))
            for i in range(len(calls))]


def _delivery(call: WebhookCall, report, received_at: datetime) -> dict:
    refused = batch_rules.every_sale_conflicts(report)
    return deliveries.delivery_row(
        outcome=deliveries.CONFLICT if refused else deliveries.ACCEPTED, status_code=409 if refused else 202,
        body=call.body, digest=call.digest, signed_at=call.signed_at, client=call.client, processed=True,
        reason="every event id is already stored with different content" if refused else "",
        received_at=received_at)


def ingest_listing_call(session: Session, collection_slug: str, call: WebhookCall) -> CallOutcome:
    """One signed call of listing events (`call.sales` holds them), in the caller's transaction:
    the replay check against every accepted delivery (of sales or listings), the listings, the
    delivery's record. Listings come one call at a time: they are not the sales' firehose."""
    if session.get_bind().dialect.name == "postgresql":  # a concurrent twin's record is seen (above)
        session.execute(deliveries.LOCK_DELIVERIES, {"digests": [call.digest]})
    accepted_before = deliveries.first_acceptance(session, call.digest)
    if accepted_before is not None:
        return CallOutcome(accepted_before=accepted_before.astimezone(UTC))
    collection = ingest_store.ensure_collection(session, collection_slug)
    report = listings_store.ingest_listings(session, collection, call.sales, datetime.now(UTC))
    deliveries.record_all(session, [_delivery(call, report, utcnow())])
    return CallOutcome(report=report)
