"""JSON errors everywhere: {"error": <reason>, "status": <code>}."""

from __future__ import annotations

import logging

from sqlalchemy import exc as db_errors
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fairvalue.errors import BadInput, Lost, NotFound, NotReady, Unavailable

log = logging.getLogger("fairvalue.api")

# A passing outage's Retry-After (the database restarting, the artifact store not answering): a
# client waits a few seconds, not its own guess. A NotReady for data not made yet (no snapshot
# published, no champion) has none: it lasts until a nowcast or a training, which no one can time.
RETRY_AFTER_SECONDS = 5


def error(status: int, reason: str, **extra) -> JSONResponse:
    return JSONResponse({"error": reason, "status": status, **extra}, status_code=status)


async def http_exception(request: Request, exc: HTTPException) -> Response:
    from api.pages import error_page, wants_html

    if wants_html(request):  # a browser on a page path (e.g. a mistyped URL) gets an HTML error page
        return error_page(request, exc.status_code, exc.detail or "error")
    response = error(exc.status_code, exc.detail or "error")
    response.headers.update(exc.headers or {})
    return response


async def not_found(request: Request, exc: NotFound) -> JSONResponse:
    return error(404, str(exc))


async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return error(400, str(exc))


async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
    return error(503, str(exc))


async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
    """A store the answer needs does not answer now: a 503 saying "retry later", and when."""
    response = error(503, str(exc))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def lost(request: Request, exc: Lost) -> JSONResponse:
    """A 500 with its reason: not a 503, which says "retry later" to a client and its alerts, since
    no retry brings the data back (the read logged what is gone)."""
    return error(500, str(exc))


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is down or restarting: a 503 the client can retry, not a 500. The engine's
    pre-ping reconnects by itself once it is back, so the app needs no restart."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    response = error(503, f"database unavailable ({type(exc).__name__}); retry shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def unhandled(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    from api.pages import error_page, wants_html

    if wants_html(request):
        return error_page(request, 500, "internal error; it has been logged")
    return error(500, "internal error; it has been logged")


HANDLERS = {HTTPException: http_exception, NotFound: not_found, BadInput: bad_input, NotReady: not_ready,
            Unavailable: unavailable, Lost: lost,  # Unavailable is a NotReady: Starlette picks the closest class
            # Connection lost, server restarting, pool exhausted: 503 with a reason, never a 500.
            db_errors.OperationalError: database_unavailable, db_errors.InterfaceError: database_unavailable,
            db_errors.TimeoutError: database_unavailable,
            Exception: unhandled}
