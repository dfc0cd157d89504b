"""Training requests: durable rows, claimed under a lease.

The broker may deliver a request's message twice (visibility timeout, reconnects, a sweep
republishing) or lose it (Redis restarted without AOF). So the message carries only the id,
and every step here is a conditional UPDATE on the row: exactly one worker can claim a
request, a worker whose lease was taken over can no longer change it (one whose lease lapsed
may still record its failure until another claims it), and a message for a request that is
claimed, done or failed does nothing.

States: queued → claimed → training → decided, or failed (with the error).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, select

from storage.tables import Collection, TrainingRequest, utcnow
from storage.upsert import insert_ignoring_conflicts

QUEUED, CLAIMED, TRAINING, DECIDED, FAILED = "queued", "claimed", "training", "decided", "failed"
ACTIVE = (CLAIMED, TRAINING)
STATES = (QUEUED, CLAIMED, TRAINING, DECIDED, FAILED)


def record(
    session: Session, collection: Collection, idempotency_key: str, reason: str,
    trigger: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
    data_cutoff: datetime | None = None,
) -> tuple[TrainingRequest, bool]:
    """Record a request once per idempotency key; return it and whether it is new."""
    by_key = select(TrainingRequest).where(TrainingRequest.idempotency_key == idempotency_key)
    # Asked again (the policy's next run, an operator's retry): found, not inserted. An insert that
    # conflicts still takes a number from the id sequence, and request ids would skip numbers.
    known = session.exec(by_key).first()
    if known is not None:
        return known, False
    now = utcnow()
    inserted = insert_ignoring_conflicts(
        session, TrainingRequest.__table__,
        [{"collection_id": collection.id, "idempotency_key": idempotency_key, "state": QUEUED, "reason": reason,
          "trigger": trigger or {}, "params": params or {}, "data_cutoff": data_cutoff, "attempts": 0,
          "created_at": now, "updated_at": now}],
        returning="id",
    )
    return session.exec(by_key).one(), bool(inserted)  # inserted, or by a concurrent ask of the same key


def mark_published(session: Session, request_id: int) -> None:
    session.execute(
        update(TrainingRequest.__table__).where(TrainingRequest.id == request_id)
        .values(published_at=utcnow())
    )


def mark_unpublished(session: Session, request_id: int) -> None:
    """Forget the publication of a request still queued: its message was consumed without
    claiming it (the training loop was paused), so the sweep (or a resume) publishes it again."""
    t = TrainingRequest.__table__.c
    session.execute(
        update(TrainingRequest.__table__).where(t.id == request_id, t.state == QUEUED).values(published_at=None)
    )


def lease_ran_out(now: datetime):
    """Claimed or training, under a lease that ran out before `now`: its holder died or hangs. The
    one condition a new claim takes, the sweep republishes or fails, and /v1/queue counts."""
    return and_(TrainingRequest.state.in_(ACTIVE), TrainingRequest.lease_expires_at < now)


def past_backoff(now: datetime):
    """Queued and past its retry's backoff (`not_before`; none before a first failure): a claim may
    take it now. Before then a message only meets a refusal, so the sweep does not publish one at
    once (one in its backoff with no message is sent with the rest of it as countdown)."""
    t = TrainingRequest
    return and_(t.state == QUEUED, or_(t.not_before.is_(None), t.not_before <= now))


def backoff_left(not_before: datetime | None, now: datetime) -> float | None:
    """Seconds until a retry's backoff (`not_before`) ends, as `now` reads: the countdown of a message
    the claim takes as it comes, where one sent at once would only be refused. None when there is
    none left (no failure yet, or past it): its message is due at once."""
    if not_before is None:
        return None
    if not_before.tzinfo is None:  # SQLite hands back naive datetimes; every stored time is UTC
        not_before = not_before.replace(tzinfo=UTC)
    left = (not_before - now).total_seconds()
    return left if left > 0 else None


def claim(session: Session, request_id: int, worker: str, lease: timedelta, max_attempts: int) -> bool:
    """Take the request if it is queued (and past its backoff) or its lease has expired with
    attempts left. A worker that dies mid-training never reaches `release_for_retry`, so the
    attempt limit is kept here too, or a training that kills its worker would be retried forever."""
    now = utcnow()
    t = TrainingRequest.__table__.c
    result = session.execute(
        update(TrainingRequest.__table__)
        .where(
            t.id == request_id,
            or_(
                past_backoff(now),
                and_(lease_ran_out(now), t.attempts < max_attempts),
            ),
        )
        .values(state=CLAIMED, claimed_by=worker, lease_expires_at=now + lease,
                attempts=t.attempts + 1, updated_at=now)
    )
    return result.rowcount == 1


def live_lease(request: TrainingRequest, now: datetime | None = None) -> tuple[str, timedelta] | None:
    """(who holds it, how much longer) while a claim's lease on an active request runs; else None.
    A holder that died keeps it until the lease runs out: no one can tell a dead holder from a slow one."""
    if request.state not in ACTIVE or request.lease_expires_at is None or request.claimed_by is None:
        return None
    expires = request.lease_expires_at
    if expires.tzinfo is None:  # SQLite hands back naive datetimes; every stored time is UTC
        expires = expires.replace(tzinfo=UTC)
    left = expires - (now or utcnow())
    return (request.claimed_by, left) if left > timedelta(0) else None


def schedule_resend(session: Session, request_id: int, until: datetime, slack: timedelta) -> datetime | None:
    """Take the one deferred re-send of a request's message, for `until`: None when taken, else the
    time of the re-send already pending (the caller's message is a duplicate, acked without one).
    A pending re-send counts as due `slack` early: it is itself the message that comes back then
    (its countdown was measured on another clock) and may schedule the next one."""
    now = utcnow()
    t = TrainingRequest.__table__.c
    taken = session.execute(
        update(TrainingRequest.__table__)
        .where(t.id == request_id, or_(t.resend_until.is_(None), t.resend_until <= now + slack))
        .values(resend_until=until)
    ).rowcount == 1
    if taken:
        return None
    pending = session.execute(select(t.resend_until).where(t.id == request_id)).scalar_one()
    return pending if pending.tzinfo else pending.replace(tzinfo=UTC)


def clear_resend(session: Session, request_id: int) -> None:
    """Forget a scheduled re-send whose message could not be sent (a later duplicate may take it)."""
    session.execute(update(TrainingRequest.__table__).where(TrainingRequest.id == request_id)
                    .values(resend_until=None))


def fenced_update(session: Session, request_id: int, worker: str, **values: Any) -> bool:
    """Change the request only while `worker` still holds its lease."""
    now = utcnow()
    t = TrainingRequest.__table__.c
    result = session.execute(
        update(TrainingRequest.__table__)
        .where(t.id == request_id, t.claimed_by == worker, t.state.in_(ACTIVE), t.lease_expires_at >= now)
        .values(updated_at=now, **values)
    )
    return result.rowcount == 1


def heartbeat(session: Session, request_id: int, worker: str, lease: timedelta) -> bool:
    return fenced_update(session, request_id, worker, lease_expires_at=utcnow() + lease)


def claimed_update(session: Session, request_id: int, worker: str, **values: Any) -> bool:
    """Change the request only while it is still `worker`'s claim, lapsed lease or not: no newer
    attempt has claimed it since (each claim takes a fresh token, so a newer one never matches)."""
    t = TrainingRequest.__table__.c
    result = session.execute(
        update(TrainingRequest.__table__)
        .where(t.id == request_id, t.claimed_by == worker, t.state.in_(ACTIVE))
        .values(updated_at=utcnow(), **values)
    )
    return result.rowcount == 1


def abandoned_error(max_attempts: int) -> str:
    return f"the lease expired on each of {max_attempts} attempts: the worker died or stalled"


def release_for_retry(session: Session, request_id: int, worker: str, error: str, max_attempts: int,
                      backoff: timedelta, final: bool = False) -> str:
    """After a failure: back to queued with a backoff, or failed for good after max_attempts or
    when the failure is `final` (no attempt could succeed). Recorded even when the attempt's lease
    lapsed first (a database that did not answer for longer than the lease also stopped its
    heartbeat), as long as no newer attempt claimed the request since: otherwise its error was
    lost and its last attempt said "died or stalled". A newer claim's state is never touched
    ("lost"). The sweep may have failed the request as abandoned meanwhile: its error says why.
    The row is read locked (FOR UPDATE on PostgreSQL), so a sweep cannot fail it between this read
    and the update that follows, which would then match nothing and lose the error."""
    request = session.get(TrainingRequest, request_id, with_for_update=True, populate_existing=True)
    if request is None or request.claimed_by != worker:
        return "lost"
    if request.state == FAILED and request.error == abandoned_error(max_attempts):
        t = TrainingRequest.__table__.c
        session.execute(update(TrainingRequest.__table__)
                        .where(t.id == request_id, t.claimed_by == worker, t.state == FAILED)
                        .values(error=error[:4000], updated_at=utcnow()))
        return FAILED
    if request.state not in ACTIVE:
        return "lost"
    if final or request.attempts >= max_attempts:
        done = claimed_update(session, request_id, worker, state=FAILED, error=error[:4000], lease_expires_at=None)
        return FAILED if done else "lost"
    done = claimed_update(session, request_id, worker, state=QUEUED, error=error[:4000], claimed_by=None,
                          lease_expires_at=None, not_before=utcnow() + backoff)
    return QUEUED if done else "lost"  # claimed by a newer attempt in between: that one decides


def fail_abandoned(session: Session, max_attempts: int) -> list[int]:
    """Fail the requests whose lease expired on their last attempt: their worker died (or
    stalled) every time, so the training itself is the likely cause. A stalled attempt that
    does end and report its failure replaces this error with its own (release_for_retry)."""
    now = utcnow()
    t = TrainingRequest.__table__.c
    failed = session.execute(
        update(TrainingRequest.__table__)
        .where(lease_ran_out(now), t.attempts >= max_attempts)
        .values(state=FAILED, lease_expires_at=None, updated_at=now, error=abandoned_error(max_attempts))
        .returning(t.id)
    )
    return [request_id for (request_id,) in failed]


def to_republish(session: Session, stale_after: timedelta, now: datetime | None = None) -> list[int]:
    """Requests whose message may be lost: queued, past any retry backoff, and never published or
    not claimed `stale_after` past when their message was due; and active ones whose lease expired
    (their worker died). A failed training's retry is published with its backoff as countdown, so
    it is due at `not_before`, not when it was published: a message sent before then would only be
    refused by the claim and spent (a skipped run, the request then waiting for a later sweep),
    and one sent soon after it would duplicate the retry's own."""
    now = now or utcnow()
    stale = now - stale_after
    t = TrainingRequest
    rows = session.exec(
        select(t.id).where(
            or_(
                and_(past_backoff(now),
                     or_(t.published_at.is_(None),
                         and_(t.published_at < stale, or_(t.not_before.is_(None), t.not_before < stale)))),
                lease_ran_out(now),
            )
        ).order_by(t.id)
    ).all()
    return list(rows)


def unpublished_in_backoff(session: Session, now: datetime) -> list[tuple[int, datetime]]:
    """(id, not_before) of the queued requests still in a retry's backoff with no message: their
    retry was not sent (the broker refused it), or its message was spent while training was paused.
    to_republish leaves them until the backoff is over (when it takes each one at once, as never
    published), so the sweep and a resume of training publish them with what is left of it as
    countdown. One published (the retry's own message, a sweep's or a resume's) is left alone: its
    message is on its way."""
    t = TrainingRequest
    rows = session.exec(
        select(t.id, t.not_before).where(t.state == QUEUED, t.not_before > now, t.published_at.is_(None))
        .order_by(t.id)
    ).all()
    return [(request_id, not_before) for request_id, not_before in rows]


def expired_leases(session: Session) -> int:
    """Claimed or training requests whose lease ran out: their worker died whole (or hangs) and
    no message of theirs comes back before the visibility timeout; the hourly sweep republishes them."""
    from sqlalchemy import func

    return session.exec(select(func.count()).select_from(TrainingRequest).where(lease_ran_out(utcnow()))).one()


def counts_by_state(session: Session) -> dict[str, int]:
    from sqlalchemy import func

    return dict(session.exec(select(TrainingRequest.state, func.count()).group_by(TrainingRequest.state)).all())
