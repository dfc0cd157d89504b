"""Promotion decisions: the trail of every promote, shadow, reject and rollback, with its reason
and numbers (who decided: models/gates.py BY_GATES, BY_MONITOR, BY_OPERATOR); and the monitor's
rollback kept due while the model it restores cannot be read."""

from __future__ import annotations

from sqlmodel import Session, select

from models import gates
from storage.runs import _jsonable
from storage.tables import Collection, DueRollback, ModelVersion, PromotionDecision


def record_decision(session: Session, coll: Collection, decision: str, decided_by: str, reason: str,
                    numbers: dict, contender: int | None, champion: int | None, request_id: int | None = None):
    """Add the decision to the session's transaction (it commits with the change it records)."""
    session.add(PromotionDecision(
        collection_id=coll.id, training_request_id=request_id, contender_version_id=contender,
        champion_version_id=champion, decision=decision, decided_by=decided_by, reason=reason,
        numbers=_jsonable(numbers)))


def standing_rejection(session: Session, target: ModelVersion) -> PromotionDecision | None:
    """The newest verdict of the gates or the monitor on this version, when it is against it: a
    reject, or the monitor's rollback of it for its live error (a later shadow promotion by the
    monitor lifts that). An operator's forced promotion or rollback does not: the judgment stands
    for the next one too."""
    verdict = session.exec(select(PromotionDecision)
                           .where(PromotionDecision.contender_version_id == target.id,
                                  PromotionDecision.decided_by.in_((gates.BY_GATES, gates.BY_MONITOR)))
                           .order_by(PromotionDecision.created_at.desc(), PromotionDecision.id.desc())).first()
    against = verdict is not None and (
        verdict.decision == gates.REJECT
        or (verdict.decision == gates.ROLLBACK and verdict.decided_by == gates.BY_MONITOR))
    return verdict if against else None


def due_rollback(session: Session, coll: Collection) -> DueRollback | None:
    """The monitor's rollback of the collection kept due (keep_due_rollback), if any."""
    return session.exec(select(DueRollback).where(DueRollback.collection_id == coll.id)).first()


def keep_due_rollback(session: Session, coll: Collection, champion: ModelVersion, previous: ModelVersion,
                      reason: str, numbers: dict) -> DueRollback:
    """Keep the monitor's rollback of `champion` to `previous` due, in the session's transaction: the
    store could not read `previous` back. The first decision of the pair stands: a store down for days
    is no reason to weigh the promotion again, as it was not one to keep it."""
    due = due_rollback(session, coll)
    if due is not None and (due.champion_version_id, due.previous_version_id) == (champion.id, previous.id):
        return due
    forget_due_rollback(session, coll)
    due = DueRollback(collection_id=coll.id, champion_version_id=champion.id, previous_version_id=previous.id,
                      reason=reason, numbers=_jsonable(numbers))
    session.add(due)
    return due


def forget_due_rollback(session: Session, coll: Collection) -> None:
    """Carried out, refused on record, or moot (the champion moved): nothing is due any more. Deleted
    through the session and flushed, so its identity map forgets the row too: a rollback kept due
    again in the same transaction adds one under the same key."""
    due = due_rollback(session, coll)
    if due is not None:
        session.delete(due)
        session.flush()
