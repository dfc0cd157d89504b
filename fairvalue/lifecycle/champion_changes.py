"""Changing the champion, shared by the monitor and the operators: read a version's artifact back
before an alias points at it (one gone or corrupt is refused on record; a store that cannot be read
just now refuses nothing), and roll back to the previous champion; each recorded as a decision."""

from __future__ import annotations

from typing import NamedTuple

from sqlmodel import Session

from fairvalue.errors import unread_artifact
from models import gates
from storage.artifacts import ArtifactError, ArtifactMissing, IntegrityError
from storage.decisions import forget_due_rollback, record_decision
from storage.registry import CHAMPION, PREVIOUS_CHAMPION, remove_alias, set_alias, verify_artifact
from storage.tables import Collection, ModelVersion


class Refusal(NamedTuple):
    """A version's artifact refused on record: the decision's reason, which every reader sees, and
    what the store said (its bucket, keys, endpoint), for the log and operators only."""
    reason: str
    store_error: str


def artifact_refusal(session: Session, store, coll: Collection, target: ModelVersion,
                     champion: ModelVersion | None, by: str) -> Refusal | None:
    """Read the artifact back before an alias points at it: None when it is sound; else, when it
    is gone or its bytes fail their sha256, the Refusal, recorded in the session's transaction, while
    the champion stays where it is. Its reason says what is wrong, never where the store keeps the
    artifact nor what the store said: those go to the log (fairvalue.errors.unread_artifact) and to
    the decision's numbers (`artifact_uri`, `store_error`), which a reader without an operator
    token sees hidden (fairvalue.answers.without_operator).
    Any other ArtifactError (the store down, timing out, forbidding) says nothing of the version,
    and a refusal on record would outlive the outage (the monitor's stands against the version): it
    is raised, nothing recorded, for the caller to try again later."""
    try:
        verify_artifact(store, target)
    except ArtifactError as exc:
        if not isinstance(exc, IntegrityError | ArtifactMissing):  # the store's trouble, not the version's
            raise
        lost = unread_artifact(exc, "the artifact", f"{by} reading back version {target.version} of {coll.slug}")
        reason = f"artifact of version {target.version} refused: {lost}"
        record_decision(session, coll, gates.REJECT, by, reason, {"artifact_uri": target.artifact_uri,
                         "sha256": target.sha256, "store_error": str(exc)},
                         contender=target.id, champion=champion.id if champion else None)
        return Refusal(reason, str(exc))
    return None


def rollback(session, coll, champion: ModelVersion, previous: ModelVersion, by: str, reason: str, numbers: dict):
    """The previous champion becomes champion again (its alias goes), recorded as a rollback; a
    rollback the monitor kept due is done with it, whoever rolled back."""
    set_alias(session, coll, CHAMPION, previous)
    remove_alias(session, coll, PREVIOUS_CHAMPION)
    forget_due_rollback(session, coll)
    record_decision(session, coll, gates.ROLLBACK, by, reason, numbers, contender=champion.id, champion=previous.id)
