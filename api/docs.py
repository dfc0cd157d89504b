"""The OpenAPI document (/openapi.json) and a docs page (/docs) rendered from it on the
server: no JavaScript and nothing fetched from a CDN."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from api.openapi import document

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#222}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}section{border-top:1px solid #ddd;padding:.4rem 0}
.m{display:inline-block;min-width:3.5em;font-weight:700}.GET{color:#0a6}.POST{color:#c60}
table{border-collapse:collapse;font-size:13px}td{padding:.1rem .6rem .1rem 0;vertical-align:top}
@media(max-width:600px){body{font-size:14px}}"""


def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app))


def _parameters(op: dict) -> str:
    rows = [f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}"
            f"{' (required)' if p.get('required') else ''}</td><td>{escape(p.get('description', ''))}</td></tr>"
            for p in op.get("parameters", [])]
    return f"<table>{''.join(rows)}</table>" if rows else ""


def docs_page(request: Request) -> HTMLResponse:
    doc = document(request.app)
    by_tag: dict[str, list[str]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            lock = " 🔒 bearer token" if op.get("security") else ""
            html = (f"<section><span class='m {method.upper()}'>{method.upper()}</span> <code>{escape(path)}</code>"
                    f"{lock}<div>{escape(op.get('summary', ''))}</div>{_parameters(op)}</section>")
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append(html)
    body = "".join(f"<h2>{escape(tag)}</h2>{''.join(items)}" for tag, items in sorted(by_tag.items()))
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>fairvalue API</title><style>{STYLE}</style><h1>fairvalue API {escape(doc['info']['version'])}</h1>"
        f"<p>{escape(doc['info']['description'])} The machine-readable document is "
        f"<a href='/openapi.json'>/openapi.json</a> (OpenAPI {doc['openapi']}).</p>{body}</html>")
