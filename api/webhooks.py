"""POST /v1/webhooks/sales (and /v1/webhooks/listings): signed, idempotent by event id, answers
with what happened.

Replays are refused: a delivery (same signature timestamp and body) already accepted is a 409
inside the signature tolerance and a 401 outside it. A call whose every sale reuses a stored
event id with different content is a 409 (the rows are kept in rejected_sales). Every refusal
is recorded in webhook_deliveries with its reason (storage/webhooks.py).

Concurrent calls are group-committed: one writer ingests every call waiting in one transaction
and answers each with its own report, exactly what the calls one after another would get
(fairvalue/group_commit.py, storage/webhook_batch.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as db_errors
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from api import jsonbody, metrics, signing
from api.deps import unknown_names, unknown_query
from api.errors import error
from api.openapi import query_names
from fairvalue import pipeline
from fairvalue.group_commit import GroupCommitter
from fairvalue.settings import get_settings
from models.listings import LISTING_KEYS, LISTING_ONLY
from models.validation import COLUMN_ALIASES, SALE_KEYS, SALE_ONLY
from storage import webhooks as deliveries
from storage.db import session_scope
from storage.webhook_batch import CallOutcome, WebhookCall, every_sale_conflicts
from tasks import names

log = logging.getLogger("fairvalue.webhooks")
PATH = "/v1/webhooks/sales"
LISTINGS_PATH = "/v1/webhooks/listings"
MAX_SALES_PER_CALL = 10_000


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    # isascii: "²" (a header is Latin-1) is isdigit() to Python, and int() refuses it (a 500)
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


# A webhook's rows may carry the keys their kind is read by (SALE_KEYS, LISTING_KEYS: every name
# validation reads, its aliases included), as a JSON file's rows (storage.bundled). A key outside
# them refuses the call, not ignored: a listing's "expires" for "expires_at" kept its ask open for
# ever. A CSV's columns are not held to this (an export's extra columns are common); its header is
# checked for the other kind's.
def _unknown_keys(rows: list[dict], takes: tuple[str, ...], noun: str, foreign: dict[str, str]) -> str | None:
    """Why some row carries a key outside `takes`, or None. A key of the other webhook's rows
    (`foreign`: key -> that path) says where the body belongs: a listing sent as a sale was stored
    as a completed sale."""
    for n, row in enumerate(rows, 1):
        unknown = [str(key) for key in row if key not in takes]
        if not unknown:
            continue
        if moved := next((foreign[key] for key in unknown if key in foreign), None):
            return (f"{noun} {n} names {', '.join(repr(k) for k in unknown if k in foreign)}, which only the "
                    f"other kind of event has: send those to {moved}")
        return unknown_names(unknown, list(takes), "key", f" in {noun} {n}")
    return None


def _sales_from(payload) -> list | str:
    """One sale object, a list of them, or {"sales": [...]}; a string says what is wrong."""
    if isinstance(payload, dict) and "listings" in payload:  # its signature must not be spent here
        return "a body of listings: send it to " + LISTINGS_PATH
    if isinstance(payload, dict) and "sales" in payload:
        if extra := sorted(str(key) for key in payload if key != "sales"):
            return unknown_names(extra, ["sales"], "key", " beside the sales")
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
    return _unknown_keys(payload, SALE_KEYS, "sale", dict.fromkeys(LISTING_ONLY, LISTINGS_PATH)) or payload


class FollowUp:
    """The out-of-cycle check after accepted sales, one per window instead of one per call.

    fairvalue.ingest.after_sales counts the sales stored since the published snapshot when it
    runs, so one message sent with a short countdown covers every call accepted before it runs;
    one message per call cost every call a broker round trip (bench/ingest.py)."""

    def __init__(self, send: Callable[..., Any] | None = None, task: str = names.AFTER_SALES) -> None:
        self._send = send or _send_with_celery
        self._task = task
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}  # per collection: the monotonic time its pending message runs at

    def covered(self, collection: str) -> bool:
        """A message is pending and will see sales committed now: no need to ask (or to take a
        thread for `request`, which may block on the broker)."""
        return time.monotonic() < self._due.get(collection, 0.0)

    def request(self, accepted: int, delay: float, collection: str) -> str:
        with self._lock:
            now = time.monotonic()
            if now < self._due.get(collection, 0.0):
                return "enqueued"  # the pending check runs after this call's commit: it sees these sales
            try:
                self._send(self._task, args=[accepted], kwargs={"collection": collection},
                           countdown=delay or None, retry=False)
            except Exception as exc:  # the broker is down: the sales are stored, beat's nowcast picks them up
                log.warning("follow-up not enqueued: %s", exc)
                return f"not enqueued ({type(exc).__name__}); the next scheduled nowcast includes these sales"
            self._due[collection] = now + delay
            return "enqueued"


def _send_with_celery(name: str, **options) -> None:
    from tasks.app import app as celery_app  # the API imports the Celery app only when it sends

    celery_app.send_task(name, **options)


follow_up = FollowUp()
# Accepted listings ask for a nowcast whatever else changed: a bargain listing is a signal for
# as long as it stands, often minutes (tasks/ingest.after_listings).
listing_follow_up = FollowUp(task=names.AFTER_LISTINGS)


def _record(**fields) -> None:
    with session_scope() as session:
        deliveries.record(session, **fields)


class UnauthenticatedRefusals:
    """How many refusals of callers that did not sign (401) or sent too much (413) are recorded:
    anyone can send those, and recording each one would let anyone grow webhook_deliveries
    without limit. Up to `per_minute` per client are kept, counted like the rate limit (in Redis
    when the broker is Redis, so every API process shares the cap; in memory otherwise or while
    Redis fails: api.limits.RedisCounter), the rest only logged (once a minute per client); every
    refusal is still answered."""

    def __init__(self, per_minute: int = 60, counter_factory=None) -> None:
        from api.limits import count_hit, counter_for_settings

        self.per_minute = per_minute
        self._factory = counter_factory or (lambda: counter_for_settings("webhook-refusals"))
        self._counter = None
        self._count_hit = count_hit

    async def record_this_one(self, client: str, now: float | None = None) -> bool:
        minute = int((time.time() if now is None else now) // 60)
        if self._counter is None:
            self._counter = self._factory()
        n = await self._count_hit(self._counter, client, minute)
        if n == self.per_minute + 1:
            log.warning("more than %d unauthenticated webhook refusals from %s this minute: the rest are "
                        "answered, not recorded", self.per_minute, client)
        return n <= self.per_minute


unauthenticated_refusals = UnauthenticatedRefusals()


async def _refuse(status: int, reason: str, outcome: str, body: bytes, client: str, digest: str | None = None,
                  signed_at: int | None = None) -> JSONResponse:
    """Answer a refusal, count it and record it; a failure to record never hides the answer."""
    metrics.webhook_refused(outcome)
    if status in (401, 413) and not await unauthenticated_refusals.record_this_one(client):
        return error(status, reason, outcome=outcome)
    try:
        await run_in_threadpool(_record, outcome=outcome, status_code=status, body=body, reason=reason,
                                digest=digest, signed_at=signed_at, client=client)
    except Exception as exc:
        log.warning("refused webhook (%s) not recorded: %s", outcome, exc)
    return error(status, reason, outcome=outcome)


def _first_acceptance(digest: str):
    with session_scope() as session:
        return deliveries.first_acceptance(session, digest)


# Calls that passed the signature, JSON and shape checks share transactions: one writer thread
# takes every call waiting and ingests them together (fairvalue/group_commit.py says why and
# how a failing batch falls back to one transaction per call).
def _caused_by_a_call(exc: Exception) -> bool:
    """False when the database itself failed (unreachable, restarting, pool exhausted), or the
    collection takes no sales: the answer (a 503, a 409) is the same for every call, so the batch
    is not retried call by call."""
    return not isinstance(exc, (db_errors.OperationalError, db_errors.InterfaceError, db_errors.TimeoutError,
                                pipeline.CannotTakeSales))


ingest_writer: GroupCommitter[WebhookCall, CallOutcome] = GroupCommitter(
    pipeline.ingest_webhook_calls, lambda call: pipeline.ingest_webhook_calls([call])[0],
    max_batch=64, name="webhook-writer", retry_alone=_caused_by_a_call)


async def _signed_call(request: Request, rows_from: Callable[[Any], list | str]) -> JSONResponse | WebhookCall:
    """The checks every signed webhook makes before storing its rows: size, signature (a replay
    outside the tolerance named as one), query, media type, JSON, then the body's shape (`rows_from`:
    the rows, or what is wrong). A refusal (recorded), or the call."""
    settings = get_settings()
    client = request.client.host if request.client else ""
    body = await _read_limited(request, settings.max_body_bytes)
    if body is None:
        return await _refuse(413, f"body larger than {settings.max_body_bytes} bytes", "too_large", b"", client)
    try:
        signed_at = signing.verify(
            request.headers.get(signing.HEADER), body,
            settings.webhook_secret.get_secret_value(), settings.webhook_tolerance_seconds,
        )
    except signing.SignatureError as exc:
        reason, digest = str(exc), None
        if exc.kind == "stale":
            digest = signing.delivery_digest(exc.timestamp, body)
            first = await run_in_threadpool(_first_acceptance, digest)
            if first is not None:
                reason = f"replayed delivery (first accepted at {first.isoformat()}): {exc}"
                return await _refuse(401, reason, deliveries.REPLAY, body, client, digest, exc.timestamp)
        return await _refuse(401, reason, exc.kind, body, client, digest, exc.timestamp)
    digest = signing.delivery_digest(signed_at, body)
    # A query parameter (none is taken: the signature covers the body only) is refused as on every route.
    unknown = unknown_query(request, query_names(request.scope["endpoint"]))
    if unknown:
        return await _refuse(400, unknown, "unknown_query_parameter", body, client, digest, signed_at)
    wrong_type = jsonbody.media_type_refusal(request.headers.get("content-type"))
    if wrong_type:
        return await _refuse(415, wrong_type, "unsupported_media_type", body, client, digest, signed_at)
    try:
        payload = jsonbody.parse(body)
    except jsonbody.BadJson as exc:
        return await _refuse(400, str(exc), "malformed", body, client, digest, signed_at)
    rows = rows_from(payload)
    if isinstance(rows, str):
        return await _refuse(422, rows, "malformed", body, client, digest, signed_at)
    return WebhookCall(rows, body, digest, signed_at, client)


async def _answer(call: WebhookCall, outcome: CallOutcome, counter, follow: FollowUp, kept_in: str) -> JSONResponse:
    """A stored call's answer: 409 for a replay, or when every row's event id is stored with other
    content (the rows kept in `kept_in`); else 202 with the report and the follow-up."""
    if outcome.accepted_before is not None:
        return await _refuse(409, f"replayed delivery: this signature was accepted at "
                             f"{outcome.accepted_before.isoformat()}; nothing was done", deliveries.REPLAY,
                             call.body, call.client, call.digest, call.signed_at)
    report = outcome.report
    metrics.webhook_outcome(report.accepted, report.duplicate, report.rejected, counter, report.reasons)
    if every_sale_conflicts(report):
        metrics.webhook_refused(deliveries.CONFLICT)
        return error(409, "every event id in this call is already stored with different content; the rows are "
                     f"kept in {kept_in}", outcome=deliveries.CONFLICT, **report.as_dict())
    return JSONResponse({**report.as_dict(), "follow_up": await _follow(follow, report.accepted)}, status_code=202)


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
      409:
        description: "a replayed delivery, every event id already stored with other content, or a collection
          that takes no sales (daily-priced, or not seeded yet)"
        content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      413: {$ref: "#/components/responses/TooLarge"}
      415: {$ref: "#/components/responses/UnsupportedMediaType"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    call = await _signed_call(request, _sales_from)
    if isinstance(call, JSONResponse):
        return call
    try:
        outcome = await asyncio.wrap_future(ingest_writer.submit(call))
    except pipeline.CannotTakeSales as exc:
        return await _not_taken(call, "sales", exc)
    return await _answer(call, outcome, metrics.WEBHOOK_SALES, follow_up, "rejected_sales")


async def _not_taken(call: WebhookCall, noun: str, exc: pipeline.CannotTakeSales) -> JSONResponse:
    """409, recorded: nothing was stored, and the sender may send the call again once the
    collection is set up (a refusal does not spend its signature)."""
    return await _refuse(409, f"this service's collection takes no {noun} now: {exc}", "not_taken", call.body,
                         call.client, call.digest, call.signed_at)


async def _follow(follow: FollowUp, accepted: int) -> str:
    """The follow-up of a call that stored `accepted` rows: none, enqueued, or why not."""
    settings = get_settings()
    if not accepted:
        return "none"
    if follow.covered(settings.collection):  # most calls of a burst: no thread hop (bench/ingest.py)
        return "enqueued"
    return await run_in_threadpool(follow.request, accepted, settings.webhook_follow_up_seconds, settings.collection)


# Listing calls of one API process run one at a time: on SQLite nothing else orders two calls'
# replay checks (PostgreSQL's advisory lock does, across processes too). Listings are not the
# sales' firehose, so they need no group commit.
_listing_writer = threading.Lock()


def _ingest_listings_alone(call: WebhookCall):
    with _listing_writer:
        return pipeline.ingest_listings_call(call)


def _listings_from(payload) -> list | str:
    """{"listings": [...]} and nothing else (a string says what is wrong): a signed body of the
    sales webhook must never read as listings here, so the two never take each other's bodies."""
    if not isinstance(payload, dict) or "listings" not in payload:
        return "body must be {\"listings\": [...]} (sales go to " + PATH + ")"
    if "sales" in payload:  # stored here, its sales would be lost with the signature spent
        return "a body of listings and sales: send the sales to " + PATH + " and the listings here, in two calls"
    if extra := sorted(str(key) for key in payload if key != "listings"):
        return unknown_names(extra, ["listings"], "key", " beside the listings")
    listings = payload["listings"]
    if not isinstance(listings, list) or not listings:
        return "listings must be a non-empty list of listing objects"
    if len(listings) > MAX_SALES_PER_CALL:
        return f"at most {MAX_SALES_PER_CALL} listings per call, got {len(listings)}"
    if not all(isinstance(x, dict) for x in listings):
        return "every listing must be a JSON object"
    sale_only = {name: PATH for field in SALE_ONLY for name in COLUMN_ALIASES[field]}
    return _unknown_keys(listings, LISTING_KEYS, "listing", sale_only) or listings


async def receive_listings(request: Request) -> JSONResponse:
    """Signed listings webhook.
    ---
    summary: "{listings: [...]}: asks (price) and withdrawals (price null); HMAC-signed like the sales webhook;
      idempotent by event id. Accepted listings request a nowcast, in which an open ask under an item's fair
      value makes its signal BUY."
    tags: [webhooks]
    parameters:
      - {name: Fairvalue-Signature, in: header, required: true, schema: {type: string},
         description: "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>"}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [listings]
            properties: {listings: {type: array, items: {$ref: "#/components/schemas/Listing"}}}
    responses:
      202: {description: "accepted, duplicate, rejected (with reasons), follow_up (a nowcast is requested)"}
      409:
        description: "a replayed delivery, every event id already stored with other content, or a collection
          that takes no listings (daily-priced, or not seeded yet)"
        content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      413: {$ref: "#/components/responses/TooLarge"}
      415: {$ref: "#/components/responses/UnsupportedMediaType"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    call = await _signed_call(request, _listings_from)
    if isinstance(call, JSONResponse):
        return call
    try:
        outcome = await run_in_threadpool(_ingest_listings_alone, call)
    except pipeline.CannotTakeSales as exc:
        return await _not_taken(call, "listings", exc)
    return await _answer(call, outcome, metrics.WEBHOOK_LISTINGS, listing_follow_up, "rejected_listings")
