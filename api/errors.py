"""JSON errors everywhere: {"error": <reason>, "status": <code>}."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("fairvalue.api")


def error(status: int, reason: str, **extra) -> JSONResponse:
    return JSONResponse({"error": reason, "status": status, **extra}, status_code=status)


async def http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    response = error(exc.status_code, exc.detail or "error")
    response.headers.update(exc.headers or {})
    return response


async def unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal error; it has been logged")
