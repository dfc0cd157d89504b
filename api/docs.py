"""The OpenAPI document and the docs page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse


def openapi_json(request: Request) -> JSONResponse:
    from api.openapi import document

    return JSONResponse(document(request.app))


def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>fairvalue API</title><a href='/openapi.json'>openapi.json</a>")
