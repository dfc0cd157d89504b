"""Webhook deliveries: replay protection and a record of every refusal.

A delivery is identified by what its signature covers (t and the body). Once one is accepted,
the same delivery again is a replay: refused, and recorded like every other refusal, so an
operator can see who is sending what (`webhook_deliveries`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import bindparam, text
from sqlmodel import Session

from storage.tables import WebhookDelivery, utcnow
from storage.upsert import insert_ignoring_conflicts

ACCEPTED, CONFLICT, REPLAY = "accepted", "conflict", "replay"


# Plain SQL on the session's connection: the webhook runs this on every call, and the ORM's
# statement building cost more than the query (bench/ingest.py).
FIRST_ACCEPTANCE = text("SELECT received_at FROM webhook_deliveries WHERE accepted_signature = :digest") \
    .columns(received_at=WebhookDelivery.__table__.c.received_at.type)
# Two API processes given the same delivery at once would both find it unaccepted and both
# answer 202. Each batch first takes a transaction lock per delivery (in digest order, so two
# batches never wait on each other crosswise); the second then finds the first's record.
LOCK_DELIVERIES = text("SELECT pg_advisory_xact_lock(hashtextextended(digest, 0)) "
                       "FROM (SELECT unnest(CAST(:digests AS text[])) AS digest ORDER BY 1) AS sorted")
ACCEPTANCES = text("SELECT accepted_signature, received_at FROM webhook_deliveries "
                   "WHERE accepted_signature IN :digests").bindparams(bindparam("digests", expanding=True)) \
    .columns(received_at=WebhookDelivery.__table__.c.received_at.type)


def first_acceptance(session: Session, digest: str) -> datetime | None:
    """When this delivery was first accepted, or None if it never was."""
    return session.connection().execute(FIRST_ACCEPTANCE, {"digest": digest}).scalar()


def acceptances(session: Session, digests: Iterable[str]) -> dict[str, datetime]:
    """When each of these deliveries was first accepted, for those that were (one statement for
    a batch of webhook calls)."""
    digests = list(digests)
    if not digests:
        return {}
    return dict(session.connection().execute(ACCEPTANCES, {"digests": digests}).all())


def _signed_time(signed_at: int | None) -> datetime | None:
    """The signature's time, None when there is none or it is no time a datetime holds (a
    correctly signed t=10**20 is refused as stale, and must still be recorded)."""
    try:
        return datetime.fromtimestamp(signed_at, UTC) if signed_at is not None else None
    except (OverflowError, OSError, ValueError):
        return None


def delivery_row(
    *, outcome: str, status_code: int, body: bytes, reason: str = "", digest: str | None = None,
    signed_at: int | None = None, client: str = "", processed: bool = False, received_at: datetime | None = None,
) -> dict:
    """One webhook_deliveries row. `processed` (its sales went through ingest) makes its digest
    the one a replay is refused against."""
    return {
        "received_at": received_at or utcnow(),
        "signature_sha256": digest,
        "accepted_signature": digest if processed else None,
        "signed_at": _signed_time(signed_at),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_bytes": len(body),
        "status_code": status_code,
        "outcome": outcome[:32],
        "reason": reason[:1000],
        "client": client[:64],
    }


def record_all(session: Session, rows: list[dict]) -> None:
    """Record deliveries (rows of delivery_row); a race between two identical deliveries keeps the first."""
    insert_ignoring_conflicts(session, WebhookDelivery.__table__, rows)


def record(session: Session, **fields) -> None:
    """Record one delivery (the fields of delivery_row)."""
    record_all(session, [delivery_row(**fields)])
