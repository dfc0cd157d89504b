"""Many webhook calls in one transaction, with set-based statements (group commit).

One replay check for every digest, one known-items query, one floor query for every day, one
insert of the claimed sales, one look-up of the event ids that were already stored, one insert
of the rejections and one of the delivery records: the same ~8 statements for a batch as for a
single call (bench/ingest.py). What each call is told is decided by fairvalue/webhook_batch.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import Session

from fairvalue import webhook_batch as batch_rules
from fairvalue.webhook_batch import CallOutcome, WebhookCall
from models.validation import item_key_of, sale_day_of, validate_batch
from storage import ingest as ingest_store
from storage import webhooks as deliveries
from storage.tables import Collection, utcnow

ORIGIN = "webhook"


def ingest_calls(session: Session, collection: Collection, calls: Sequence[WebhookCall],
                 min_floor_fraction: float) -> list[CallOutcome]:
    """Each call's outcome, in the caller's transaction; the caller commits."""
    received_at = utcnow()
    replayed = batch_rules.replays(calls, deliveries.acceptances(session, {c.digest for c in calls}), received_at)
    live = [call for i, call in enumerate(calls) if i not in replayed]

    rows = [row for call in live for row in call.sales if isinstance(row, dict)]
    known = ingest_store.known_item_keys(session, collection, {item_key_of(row) for row in rows})
    floors = ingest_store.floor_lookup(session, collection, {d for d in map(sale_day_of, rows) if d is not None})
    now = datetime.now(UTC)
    validated = [validate_batch(call.sales, known, floors, min_floor_fraction, now) for call in live]

    claims = batch_rules.first_claims(validated)
    claimed = batch_rules.claimed_sales(validated, claims)
    inserted = ingest_store.insert_sales(session, collection, claimed)
    stored_hash = ingest_store.stored_content_hashes(
        session, collection, [s.event_id for s in claimed if s.event_id not in inserted])
    stored_hash.update((s.event_id, s.content_hash) for s in claimed if s.event_id in inserted)
    settled = batch_rules.settle(validated, claims, inserted, stored_hash)

    ingest_store.store_rejections(session, collection, [r for s in settled for r in s.rejections], ORIGIN)
    deliveries.record_all(session, [_delivery(call, s.report, received_at) for call, s in zip(live, settled, strict=True)])

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
