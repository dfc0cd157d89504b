"""POST /v1/webhooks/sales: signed, idempotent by event id, answers with what happened."""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from api import metrics, signing
from api.errors import error
from fairvalue import pipeline
from fairvalue.settings import get_settings

log = logging.getLogger("fairvalue.webhooks")
MAX_SALES_PER_CALL = 10_000


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _sales_from(payload) -> list | str:
    """One sale object, a list of them, or {"sales": [...]}; a string says what is wrong."""
    if isinstance(payload, dict) and "sales" in payload:
        payload = payload["sales"]
    elif isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        return "body must be a sale object, a list of sales or {\"sales\": [...]}"
    if not payload:
        return "no sales in body"
    if len(payload) > MAX_SALES_PER_CALL:
        return f"at most {MAX_SALES_PER_CALL} sales per call, got {len(payload)}"
    if not all(isinstance(s, dict) for s in payload):
        return "every sale must be a JSON object"
    return payload


def _enqueue_follow_up(accepted: int) -> str:
    from tasks.app import app

    try:
        app.send_task("fairvalue.ingest.after_sales", args=[accepted], retry=False)
        return "enqueued"
    except Exception as exc:  # the broker is down: the sales are stored, beat's nowcast picks them up
        log.warning("follow-up not enqueued: %s", exc)
        return f"not enqueued ({type(exc).__name__}); the next scheduled nowcast includes these sales"


async def receive_sales(request: Request) -> JSONResponse:
    """Signed sales webhook.
    ---
    summary: "One sale, a list, or {sales: [...]}; HMAC-signed (Fairvalue-Signature); idempotent by event id"
    tags: [webhooks]
    parameters:
      - {name: Fairvalue-Signature, in: header, required: true, schema: {type: string},
         description: "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>"}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            oneOf:
              - {$ref: "#/components/schemas/Sale"}
              - {type: array, items: {$ref: "#/components/schemas/Sale"}}
              - {type: object, properties: {sales: {type: array, items: {$ref: "#/components/schemas/Sale"}}}}
    responses:
      202: {description: "accepted, duplicate, rejected (with reasons), follow_up"}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      413: {$ref: "#/components/responses/TooLarge"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    settings = get_settings()
    body = await _read_limited(request, settings.max_body_bytes)
    if body is None:
        return error(413, f"body larger than {settings.max_body_bytes} bytes")
    try:
        signing.verify(
            request.headers.get(signing.HEADER), body,
            settings.webhook_secret.get_secret_value(), settings.webhook_tolerance_seconds,
        )
    except signing.SignatureError as exc:
        return error(401, str(exc))
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error(400, f"body is not valid JSON: {exc}")
    except RecursionError:
        return error(400, "body is nested too deeply")
    sales = _sales_from(payload)
    if isinstance(sales, str):
        return error(422, sales)
    report = await run_in_threadpool(pipeline.ingest_sales_rows, sales, "webhook", settings)
    metrics.webhook_outcome(report.accepted, report.duplicate, report.rejected)
    follow_up = await run_in_threadpool(_enqueue_follow_up, report.accepted) if report.accepted else "none"
    return JSONResponse({**report.as_dict(), "follow_up": follow_up}, status_code=202)
