"""Changing the champion, shared by the monitor and the operators: read a version's artifact back
before an alias points at it (one gone or corrupt is refused on record; a store that cannot be read
just now refuses nothing), and roll back to the previous champion; each recorded as a decision."""

from __future__ import annotations

from sqlmodel import Session

from models import gates
from storage.artifacts import ArtifactError, ArtifactMissing, IntegrityError
from storage.decisions import forget_due_rollback, record_decision
from storage.registry import CHAMPION, PREVIOUS_CHAMPION, remove_alias, set_alias, verify_artifact
from storage.tables import Collection, ModelVersion


def artifact_refusal(session: Session, store, coll: Collection, target: ModelVersion,
                      champion: ModelVersion | None, by: str) -> str | None:
    """Read the artifact back before an alias points at it: None when it is sound; else, when it
    is gone or its bytes fail their sha256, the refusal, recorded in the session's transaction,
    while the champion stays where it is. Any other ArtifactError (the store down, timing out,
    forbidding) says nothing of the version, and a refusal on record would outlive the outage
    (the monitor's stands against the version): it is raised, nothing recorded, for the caller
    to try again later."""
    try:
        verify_artifact(store, target)
    except ArtifactError as exc:
        if not isinstance(exc, IntegrityError | ArtifactMissing):  # the store's trouble, not the version's
            raise
        reason = f"artifact of version {target.version} refused: {exc}"
        record_decision(session, coll, gates.REJECT, by, reason, {"artifact_uri": target.artifact_uri,
                         "sha256": target.sha256}, contender=target.id, champion=champion.id if champion else None)
        return reason
    return None


def rollback(session, coll, champion: ModelVersion, previous: ModelVersion, by: str, reason: str, numbers: dict):
    """The previous champion becomes champion again (its alias goes), recorded as a rollback; a
    rollback the monitor kept due is done with it, whoever rolled back."""
    set_alias(session, coll, CHAMPION, previous)
    remove_alias(session, coll, PREVIOUS_CHAMPION)
    forget_due_rollback(session, coll)
    record_decision(session, coll, gates.ROLLBACK, by, reason, numbers, contender=champion.id, champion=previous.id)
