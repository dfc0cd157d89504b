"""Operator endpoints need `Authorization: Bearer <FAIRVALUE_OPERATOR_TOKEN>`."""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request

from fairvalue.settings import get_settings


def require_operator(request: Request) -> None:
    expected = get_settings().operator_token.get_secret_value()
    if not expected:
        raise HTTPException(401, "operator API disabled: set FAIRVALUE_OPERATOR_TOKEN")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "operator endpoints need Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(401, "invalid operator token", headers={"WWW-Authenticate": "Bearer"})
