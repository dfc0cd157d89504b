"""Operator endpoints need `Authorization: Bearer <token>`: a token made with
`fairvalue tokens create --name NAME` (stored hashed, revocable), or the bootstrap token
FAIRVALUE_OPERATOR_TOKEN when it is set. With neither (no token created, or every one revoked),
every operator call is a 401 that says so and how to create one."""

from __future__ import annotations

import hmac

from sqlmodel import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request

from fairvalue.answers import iso
from fairvalue.settings import get_settings
from storage import tokens
from storage.db import session_scope

CHALLENGE = {"WWW-Authenticate": "Bearer"}
CREATE_ONE = "create one with `fairvalue tokens create --name NAME` (or set FAIRVALUE_OPERATOR_TOKEN)"


def require_operator(request: Request) -> str:
    """The name of the caller's token (sync: call it in a thread). Raises 401 otherwise."""
    with session_scope() as session:
        return operator_name(session, request.headers.get("authorization", ""),
                             get_settings().operator_token.get_secret_value())


def is_operator(request: Request) -> bool:
    """Whether the request carries a valid operator token (sync: call it in a thread). Public reads
    ask it to show operators' names and workers' hosts only to operators; a missing or invalid
    token is a public caller, not a 401: the read itself is public."""
    if not request.headers.get("authorization"):
        return False  # the usual public call: no database round trip
    try:
        require_operator(request)
    except HTTPException:
        return False
    return True


def operator_name(session: Session, authorization: str, bootstrap: str) -> str:
    """The name of the token an Authorization header presents ("bootstrap" for `bootstrap`, the
    FAIRVALUE_OPERATOR_TOKEN), or a 401 that says why not."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not bootstrap and not tokens.any_active(session):
        raise _unauthorized(_no_active_token(session, token))
    if not token:
        raise _unauthorized("operator endpoints need Authorization: Bearer <token>")
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return "bootstrap"
    found = tokens.verify(session, token)
    if found is None:
        raise _unauthorized(_revoked(session, token) or "invalid operator token")
    return found.name


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers=CHALLENGE)


def _revoked(session: Session, token: str) -> str | None:
    """Why a revoked token is refused, or None for one that is not a revoked token. Its holder
    learns only what their own token's row says, its name and when it was revoked."""
    revoked = tokens.revoked(session, token) if token else None
    return None if revoked is None else f"operator token {revoked.name!r} was revoked at {iso(revoked.revoked_at)}"


def _no_active_token(session: Session, token: str) -> str:
    """No token would be accepted: the API is not switched off, its tokens are all gone (or none
    was made yet). Says which, and for a revoked token presented, that it was revoked."""
    revoked = _revoked(session, token)
    if revoked is not None:
        return f"{revoked}, and no operator token is active: {CREATE_ONE}"
    if tokens.any_created(session):
        return f"no active operator token: every token was revoked; {CREATE_ONE}"
    return f"no active operator token: none was created yet; {CREATE_ONE}"
