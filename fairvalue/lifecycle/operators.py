"""The operators' actions (the CLI and the API's operator routes): retrain, promote, roll back,
and the decision trail. Each records who acted and why."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from sqlmodel import Session, select

from fairvalue import pipeline
from fairvalue.errors import unread_artifact
from fairvalue.lifecycle.champion_changes import artifact_refusal, rollback
from fairvalue.lifecycle.training_requests import PolicyOutcome, record_request
from fairvalue.settings import Settings, get_settings
from models import gates
from storage.artifacts import ArtifactError, get_store
from storage.db import session_scope
from storage.decisions import record_decision, standing_rejection
from storage.registry import CHAMPION, PREVIOUS_CHAMPION, get_alias, lock_collection, promote, version_numbers
from storage.tables import Collection, ModelVersion, PromotionDecision, TrainingRequest, utcnow

# What an operator gives as the reason of a retrain, promote or rollback: a sentence kept with the
# request or decision and shown in listings, not a document. The API and the CLI both refuse a
# longer one (a cut would change what the operator said without telling them).
MAX_REASON_LENGTH = 500
# The largest version number an operator can name (nine digits): past the versions' INTEGER column
# (2**31 - 1) a look-up was the database's error, a traceback of `fairvalue promote 9999999999`.
MAX_VERSION = 999_999_999


class BadReason(ValueError):
    """An operator's reason that cannot be recorded as given; the message says why."""


def operator_reason(reason: str) -> str:
    """The reason as recorded (stripped), or BadReason: empty, over MAX_REASON_LENGTH characters,
    or holding a NUL (no text column stores one)."""
    reason = reason.strip()
    if not reason:
        raise BadReason("reason (a non-empty string) is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadReason(f"reason is {len(reason):,} characters; give at most {MAX_REASON_LENGTH} characters")
    if "\x00" in reason:
        raise BadReason("reason must not contain a NUL character")
    return reason


class IdempotencyKeyReused(ValueError):
    """An operator's idempotency key already names a request, or a rollback, for another reason or
    parameters."""


def enqueue_retrain(reason: str, params: dict | None = None, settings: Settings | None = None,
                    operator: str | None = None, idempotency_key: str | None = None) -> PolicyOutcome:
    """An operator's retrain: a new request, unless `idempotency_key` (a client's own, the API's
    Idempotency-Key header) already named one: a retry after a timeout then gets that request
    back (new_request False) instead of a second training; IdempotencyKeyReused when that request
    asked for something else. BadTrainingParams when `params` could not train this collection.
    `operator` names who asked (an API token's name, or "cli:<login>"). BadReason for a reason
    operator_reason refuses."""
    reason = operator_reason(reason)
    settings = settings or get_settings()
    # The client's key hashed: a 64-character slug and a 128-character key would not fit the column.
    key = f"{settings.collection}:operator:" + (f"key:{_key_digest(idempotency_key)}"
                                                 if idempotency_key else utcnow().isoformat())
    outcome = record_request(settings, key, f"operator: {reason}", {"operator": operator or True}, params or {},
                              check_params=True)
    if idempotency_key and not outcome.new_request:
        with session_scope() as session:
            earlier = session.get(TrainingRequest, outcome.request_id)
            if (earlier.reason, earlier.params) != (f"operator: {reason}", params or {}):
                raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} already names request "
                                           f"{earlier.id} ({earlier.reason}, params {earlier.params})")
            outcome = replace(outcome, request_state=earlier.state)
    return outcome


class ArtifactRefused(RuntimeError):
    """The version's artifact is missing or fails its sha256 (refused on record): it must not
    become champion. Or the store could not be read just now (nothing recorded): not yet."""


def _refuse_unverified(session: Session, store, coll: Collection, target: ModelVersion,
                       champion: ModelVersion | None, by: str) -> None:
    """artifact_refusal for an operator's change: a refusal is committed, then raised. A store that
    could not be read refuses the change as well (the API's 409, the CLI's one line), with nothing
    recorded against the version: the operator tries again once the store answers. Either says
    what is wrong, not the store's words (its bucket, keys, endpoint): those are logged
    (fairvalue.errors.unread_artifact), and a refusal's are in its decision's numbers."""
    try:
        refusal = artifact_refusal(session, store, coll, target, champion, by)
    except ArtifactError as exc:
        unread = unread_artifact(exc, f"the artifact of version {target.version}",
                                 f"an operator's change of the champion of {coll.slug}")
        raise ArtifactRefused(f"nothing changed: {unread}") from exc
    if refusal is not None:
        session.commit()
        raise ArtifactRefused(refusal.reason)


def _who(operator: str | None) -> dict:
    """The decision's record of which operator acted (the API token's name, or "cli:<login>")."""
    return {"operator": operator} if operator else {}


class RejectedByGates(RuntimeError):
    """An operator asked to promote a version the gates rejected, or the monitor rolled back,
    without forcing it: nothing changed. The message names the decision; each adapter says how to
    force (--force, "force": true)."""


def operator_promote(version: int, reason: str, settings: Settings | None = None, operator: str | None = None,
                     force: bool = False) -> dict:
    """Make `version` the champion. A version the gates rejected or the monitor rolled back is
    refused (RejectedByGates, naming the decision) unless `force`: the forced promotion records the
    decision it overrode."""
    reason = operator_reason(reason)
    settings = settings or get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        target = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                         ModelVersion.version == version)).first()
        if target is None:
            raise LookupError(f"no model version {version} in {coll.slug}")
        champion = get_alias(session, coll, CHAMPION)
        if champion is not None and champion.id == target.id:
            return {"champion": version, "changed": False}
        rejection = standing_rejection(session, target)
        if rejection is not None and not force:
            done = "rolled back" if rejection.decision == gates.ROLLBACK else "rejected"
            raise RejectedByGates(
                f"version {version} was {done} by the {rejection.decided_by} on "
                f"{rejection.created_at:%Y-%m-%d %H:%M} UTC (decision {rejection.id}): {rejection.reason}")
        _refuse_unverified(session, get_store(settings), coll, target, champion, gates.BY_OPERATOR)
        promote(session, coll, target, settings.probation_days)
        overrode = {} if rejection is None else {"forced_over": {
            "decision_id": rejection.id, "decided_by": rejection.decided_by, "reason": rejection.reason,
            "decided_at": rejection.created_at.isoformat()}}
        record_decision(session, coll, gates.PROMOTE, gates.BY_OPERATOR, reason, {**_who(operator), **overrode},
                         contender=target.id, champion=champion.id if champion else None)
    return {"champion": version, "changed": True, **({"forced_over_decision": rejection.id} if rejection else {})}


def operator_rollback(reason: str, settings: Settings | None = None, operator: str | None = None,
                      idempotency_key: str | None = None) -> dict:
    """Put the previous champion back (LookupError when there is none). A rollback names no target,
    so a retry whose first answer was lost cannot be told from a second rollback, which finds nothing
    to roll back to, unless it carries its `idempotency_key` (the API's Idempotency-Key header), kept
    with the decision: then it gets the first rollback back, changed False (as a retried promote),
    and the champion now if it has moved since; IdempotencyKeyReused when that rollback gave another
    reason. `changed` True: rolled back now."""
    reason = operator_reason(reason)
    settings = settings or get_settings()
    key = _key_digest(idempotency_key)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        champion = get_alias(session, coll, CHAMPION)
        earlier = _rollback_with_key(session, coll, key) if key else None
        if earlier is not None:
            return _replayed(session, earlier, reason, idempotency_key, champion)
        previous = get_alias(session, coll, PREVIOUS_CHAMPION)
        if champion is None or previous is None:
            raise LookupError("nothing to roll back to: there is no previous champion")
        _refuse_unverified(session, get_store(settings), coll, previous, champion, gates.BY_OPERATOR)
        rollback(session, coll, champion, previous, gates.BY_OPERATOR, reason,
                 {**_who(operator), **({KEY_DIGEST: key} if key else {})})
        return {"champion": previous.version, "rolled_back_from": champion.version, "changed": True}


# Where an operator's rollback keeps the digest of its Idempotency-Key, in its decision's numbers.
KEY_DIGEST = "idempotency_key_sha256"


def _key_digest(idempotency_key: str | None) -> str | None:
    """A client's Idempotency-Key as kept (a training request's, a rollback's): its sha256, so the
    client's own text is not shown, and any key fits the column."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None


def _rollback_with_key(session: Session, coll: Collection, key: str) -> PromotionDecision | None:
    """The operator's rollback of the collection that kept this key digest (rollbacks are few: read in Python
    rather than by a JSON path each database spells its own way)."""
    rollbacks = session.exec(select(PromotionDecision).where(
        PromotionDecision.collection_id == coll.id, PromotionDecision.decision == gates.ROLLBACK,
        PromotionDecision.decided_by == gates.BY_OPERATOR).order_by(PromotionDecision.id.desc())).all()
    return next((d for d in rollbacks if (d.numbers or {}).get(KEY_DIGEST) == key), None)


def _replayed(session: Session, earlier: PromotionDecision, reason: str, idempotency_key: str,
              champion: ModelVersion | None) -> dict:
    """The answer of the rollback `earlier` recorded, to a retry of it: nothing changes now."""
    if earlier.reason != reason:
        raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} already names the rollback of decision "
                                   f"{earlier.id} ({earlier.reason})")
    number = version_numbers(session, (earlier.champion_version_id, earlier.contender_version_id))
    out = {"champion": number.get(earlier.champion_version_id),
           "rolled_back_from": number.get(earlier.contender_version_id), "changed": False, "replayed": True}
    if champion is None or champion.id != earlier.champion_version_id:  # moved since: say where it is now
        out["champion_now"] = champion.version if champion else None
    return out


def decisions(settings: Settings | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, with model version numbers (not row ids) for contender and champion: the API's
    read (fairvalue.model_reads.decisions). NotFound for a collection that does not exist (looked up, not
    created: a mistyped slug leaves nothing behind)."""
    from fairvalue.model_reads import decisions as read_decisions

    return read_decisions((settings or get_settings()).collection, limit=limit)["decisions"]
