"""Operator endpoints need `Authorization: Bearer <token>`: a token made with
`fairvalue tokens create --name NAME` (stored hashed, revocable), or the bootstrap token
FAIRVALUE_OPERATOR_TOKEN when it is set. With neither, the operator endpoints are off."""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request

from fairvalue.settings import get_settings
from storage import tokens
from storage.db import session_scope

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_operator(request: Request) -> str:
    """The name of the caller's token (sync: call it in a thread). Raises 401 otherwise."""
    bootstrap = get_settings().operator_token.get_secret_value()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    with session_scope() as session:
        if not bootstrap and not tokens.any_active(session):
            raise HTTPException(401, "operator API disabled: create a token with `fairvalue tokens create "
                                "--name NAME` (or set FAIRVALUE_OPERATOR_TOKEN)", headers=CHALLENGE)
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "operator endpoints need Authorization: Bearer <token>", headers=CHALLENGE)
        if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
            return "bootstrap"
        found = tokens.verify(session, token)
        if found is None:
            raise HTTPException(401, "invalid operator token", headers=CHALLENGE)
        return found.name
