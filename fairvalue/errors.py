"""What the read functions raise, and the HTTP layer maps each to one status code; and
unread_artifact, which turns what the artifact store raised into one of them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.artifacts import ArtifactError

log = logging.getLogger("fairvalue.reads")


class NotFound(LookupError):
    """404: no such collection, item or version."""


class BadInput(ValueError):
    """400: a parameter is malformed or out of range."""


class NotReady(RuntimeError):
    """503: the data the answer needs does not exist yet (no snapshot, no champion)."""


class Unavailable(NotReady):
    """503 with a Retry-After: the data exists, but the store holding it does not answer now (down,
    timing out, refusing). Unlike a NotReady for data not made yet, a retry soon may succeed."""


class Lost(RuntimeError):
    """500: stored data the answer needs is gone or corrupt (an artifact deleted from the store, or
    not the bytes registered). Unlike NotReady, no retry brings it back: an operator must restore it."""


def unread_artifact(exc: ArtifactError, what: str, where: str) -> Lost | Unavailable:
    """What a read raises when the artifact store did not give back `what` ("the model of the
    published snapshot"): Lost when the object is gone or is not the bytes registered, else
    Unavailable. The store's own text (its bucket, keys, endpoint) is logged with `where` (which
    read, of what), never put in the answer: a reader without a token must not learn them."""
    # Here, not at the top: storage.artifacts brings the settings (pydantic-settings) with it, most
    # of this module's import, which every read and fairvalue.answers pay for their BadInput.
    from storage.artifacts import ArtifactMissing, IntegrityError

    if isinstance(exc, ArtifactMissing | IntegrityError):
        log.error("%s: %s: %s", where, what, exc)
        state = ("is gone from the artifact store" if isinstance(exc, ArtifactMissing)
                 else "in the artifact store is not the one registered (sha256 mismatch)")
        return Lost(f"{what} {state}; an operator must restore it")
    log.warning("%s: %s: %s", where, what, exc)
    return Unavailable(f"{what} cannot be read from the artifact store now; retry later")
