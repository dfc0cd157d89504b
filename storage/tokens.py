"""Operators' bearer tokens: created once (the clear token is returned to print, never stored),
looked up by sha256, revoked by name.

A token is 32 random bytes (URL-safe base64), so a plain sha256 is enough: there is nothing
to brute-force that a slow hash would protect, and a lookup by digest is one indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from storage.tables import ApiToken, utcnow

PREFIX = "fv_"
NAME = re.compile(r"\A[A-Za-z0-9_.@-]{1,100}\Z")  # \Z: `$` also matches before a final newline ("bob\n")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(session: Session, name: str) -> str:
    """A new token named `name`; returns the clear token. A name is used once, even after revoking:
    the decisions and training requests a token made record its name, and the refusal of a revoked
    token names it, so a second token under the name would be taken for the first."""
    if not NAME.match(name):
        raise ValueError("a token name is 1-100 letters, digits, _ . @ -")
    found = session.exec(select(ApiToken).where(ApiToken.name == name)).first()
    if found is not None and found.revoked_at is not None:
        raise ValueError(f"the token named {name!r} was revoked on {found.revoked_at:%Y-%m-%d}; a revoked name is "
                         "not reused (what its token did is recorded under it): pick another name")
    if found is not None:
        raise ValueError(f"a token named {name!r} is active; to replace it, create one under another name, "
                         f"then revoke {name!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with session.begin_nested():  # a savepoint: the caller's transaction outlives a refusal
            session.add(ApiToken(name=name, token_sha256=digest(token)))
    except IntegrityError:  # the name's unique index: another call created it since the look-up above
        raise ValueError(f"a token named {name!r} was created by another call at the same moment; "
                         "pick another name") from None
    return token


def list_all(session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(ApiToken.id)).all())


def revoke(session: Session, name: str) -> bool:
    """Revoke the token named `name`; False when there is no such active token."""
    result = session.execute(update(ApiToken.__table__).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return result.rowcount == 1


def any_active(session: Session) -> bool:
    return session.exec(select(ApiToken.id).where(ApiToken.revoked_at.is_(None))).first() is not None


def any_created(session: Session) -> bool:
    """Whether any token was ever made, revoked or not."""
    return session.exec(select(ApiToken.id)).first() is not None


def revoked(session: Session, token: str) -> ApiToken | None:
    """The revoked token with this value, or None: a refusal can then say it was revoked."""
    return session.exec(select(ApiToken).where(ApiToken.token_sha256 == digest(token),
                                               ApiToken.revoked_at.is_not(None))).first()


def verify(session: Session, token: str) -> ApiToken | None:
    """The active token with this value, or None. Records when it was last used (at most once a minute)."""
    found = session.exec(select(ApiToken).where(ApiToken.token_sha256 == digest(token),
                                                ApiToken.revoked_at.is_(None))).first()
    if found is not None and (found.last_used_at is None or utcnow() - found.last_used_at > timedelta(minutes=1)):
        found.last_used_at = utcnow()
        session.add(found)
    return found
