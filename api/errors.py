"""JSON errors everywhere: {"error": <reason>, "status": <code>}."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from fairvalue.errors import BadInput, NotFound, NotReady

log = logging.getLogger("fairvalue.api")


def error(status: int, reason: str, **extra) -> JSONResponse:
    return JSONResponse({"error": reason, "status": status, **extra}, status_code=status)


async def http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    response = error(exc.status_code, exc.detail or "error")
    response.headers.update(exc.headers or {})
    return response


async def not_found(request: Request, exc: NotFound) -> JSONResponse:
    return error(404, str(exc))


async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return error(400, str(exc))


async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
    return error(503, str(exc))


async def unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal error; it has been logged")


HANDLERS = {HTTPException: http_exception, NotFound: not_found, BadInput: bad_input, NotReady: not_ready,
            Exception: unhandled}
