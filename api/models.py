"""The model registry, decisions and training requests; operators' controls."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import jsonbody
from api.auth import is_operator, require_operator
from api.deps import etag_matches, int_param, slug_of, str_param, unknown_names
from fairvalue import lifecycle, model_reads, reads
from fairvalue.settings import Settings, get_settings
from storage.db import session_scope

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces


def list_models(request: Request) -> JSONResponse:
    """Versions, aliases and the latest decisions.
    ---
    summary: Model versions (artifact, sha256, lineage, metrics), aliases and the decision trail
    tags: [models]
    responses:
      200: {description: "versions, aliases, decisions"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(model_reads.models_overview(slug_of(request), people=is_operator(request)))


def _version_number(request: Request) -> int:
    raw = request.path_params["version"]
    if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() too, but int() refuses it
        raise HTTPException(400, f"version must be a number, got {raw[:40]!r}")
    if len(raw) > len(str(lifecycle.MAX_VERSION)):  # past what the versions' INTEGER column holds
        raise HTTPException(400, f"version must be at most {lifecycle.MAX_VERSION:,}, got {raw[:40]}")
    return int(raw)


def version_diagnostics(request: Request) -> Response:
    """A version's diagnostics page.
    ---
    summary: "A model version's diagnostics page: forward error distribution, predicted vs actual, error by
      segment, learning curve (HTML, from the artifact store, sha256-verified)"
    tags: [models]
    responses:
      200: {description: "the page; its ETag is the sha256 recorded with the version",
            content: {text/html: {schema: {type: string}}}}
      304: {description: "the page named by If-None-Match is unchanged"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      500: {$ref: "#/components/responses/Lost"}
      503: {$ref: "#/components/responses/Unavailable"}
    """
    version = _version_number(request)
    body, sha256 = model_reads.version_diagnostics(slug_of(request), version)
    # Content-addressed: a version's page never changes.
    headers = {"ETag": f'"{sha256}"', "Cache-Control": "public, max-age=86400, immutable"}
    if etag_matches(request, sha256):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def list_decisions(request: Request) -> JSONResponse:
    """Promotions, shadows, rejections and rollbacks.
    ---
    summary: Model decisions with their reasons and numbers, newest first (offset pagination)
    tags: [models]
    parameters:
      - {name: decision, in: query, schema: {type: string, enum: [promote, shadow, reject, rollback]},
         description: "in any case (PROMOTE), as a signal"}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
      - {name: offset, in: query, schema: {type: integer, minimum: 0, default: 0}}
    responses:
      200: {description: "decisions, total, next_offset"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(model_reads.decisions(slug_of(request), str_param(request, "decision"),
                                              int_param(request, "limit", 50), int_param(request, "offset", 0),
                                              people=is_operator(request)))


def list_training_requests(request: Request) -> JSONResponse:
    """Training requests.
    ---
    summary: Training requests with state, attempts, lease and result (the version and its decision), newest first
    tags: [models]
    parameters:
      - {name: state, in: query, schema: {type: string, enum: [queued, claimed, training, decided, failed]},
         description: "in any case (Queued), as a signal"}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500, default: 200}}
      - {name: offset, in: query, schema: {type: integer, minimum: 0, default: 0}}
    responses:
      200: {description: "training_requests"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(model_reads.training_requests(slug_of(request), str_param(request, "state"),
                                                      int_param(request, "limit", 200),
                                                      int_param(request, "offset", 0), people=is_operator(request)))


async def _json_body(request: Request, takes: tuple[str, ...]) -> dict:
    """The body's JSON object; a 422 naming any key outside `takes`: a misspelled one ("parms")
    would otherwise be ignored and the request carried out without what it asked for."""
    body = await request.body()
    if not body:
        return {}
    wrong_type = jsonbody.media_type_refusal(request.headers.get("content-type"))
    if wrong_type:
        raise HTTPException(415, wrong_type)
    try:
        value = jsonbody.parse(body)
    except jsonbody.BadJson as exc:
        raise HTTPException(400, str(exc)) from None
    if not isinstance(value, dict):
        raise HTTPException(422, "body must be a JSON object")
    unknown = [key for key in value if key not in takes]
    if unknown:
        raise HTTPException(422, unknown_names(unknown, takes, "key", " in the body"))
    return value


def _idempotency_key(request: Request) -> str | None:
    """The client's Idempotency-Key header, if it sent one; a 400 for one it could not mean."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise HTTPException(400, "Idempotency-Key must be 1 to 128 printable ASCII characters")
    return key


def _unsent(why: str | None, then: str) -> dict:
    return {} if why is None else {"not_sent": f"{why}; {then}"}


async def _request_nowcast(settings: Settings) -> str:
    """Ask for a nowcast of the collection after a committed champion change; say if it was not."""
    from tasks.app import request_nowcast, send_after_commit

    why = await run_in_threadpool(send_after_commit, request_nowcast, settings.collection)
    return "requested" if why is None else f"not requested ({why}); the next scheduled nowcast serves the new champion"


def _reason(body: dict, default: str | None = "operator") -> str:
    reason = body.get("reason", default)
    if not isinstance(reason, str):
        raise HTTPException(422, "reason (a non-empty string) is required")
    try:
        return lifecycle.operator_reason(reason)
    except lifecycle.BadReason as exc:
        raise HTTPException(422, str(exc)) from None


def _scoped_settings(request: Request) -> Settings:
    """The settings with `collection` set to the route's collection (404 when it does not exist)."""
    slug = slug_of(request)
    with session_scope() as session:
        reads.collection_row(session, slug)
    settings = get_settings()
    return settings if slug == settings.collection else settings.model_copy(update={"collection": slug})


async def create_training_request(request: Request) -> JSONResponse:
    """Record a training request and publish it (operator).
    ---
    summary: "Operator: record a training request and publish it to the training queue"
    tags: [operators]
    security: [{bearer: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [reason]
            additionalProperties: false
            properties:
              reason: {type: string, minLength: 1, maxLength: 500}
              params: {type: object, description: "training parameter overrides, e.g. {max_iter: 300}"}
    parameters:
      - {name: Idempotency-Key, in: header, required: false, schema: {type: string, minLength: 1, maxLength: 128},
         description: "the client's own key: a retry with it gets the first request back, not a second training"}
    responses:
      202: {description: "the request id, state (queued, or where an earlier one with the same Idempotency-Key
        is: replayed true; past queued, its model_version, decision or error, and not_published saying why it
        was not sent again), and whether it was published (when the broker was unreachable, not_sent says why;
        the hourly training sweep publishes it; while the training loop is paused, paused says so and resuming
        it publishes the request)"}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      404: {$ref: "#/components/responses/NotFound"}
      409:
        description: "the Idempotency-Key already names a request for another reason or parameters"
        content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
      413: {$ref: "#/components/responses/TooLarge"}
      415: {$ref: "#/components/responses/UnsupportedMediaType"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    operator = await run_in_threadpool(require_operator, request)
    idempotency_key = _idempotency_key(request)
    body = await _json_body(request, takes=("reason", "params"))
    reason = _reason(body, default=None)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise HTTPException(422, "params must be an object of training parameters")
    settings = await run_in_threadpool(_scoped_settings, request)
    from tasks.lifecycle import request_training

    try:
        done = await run_in_threadpool(request_training, reason, params, settings, operator, idempotency_key)
    except lifecycle.BadTrainingParams as exc:
        raise HTTPException(422, str(exc)[:500]) from None
    except lifecycle.IdempotencyKeyReused as exc:
        raise HTTPException(409, str(exc)[:500]) from None
    # A replay of a request past waiting answers where it is now (its result when decided or
    # failed) and why nothing was sent, rather than only published: false.
    now = ({} if done.waits else await run_in_threadpool(model_reads.training_request_outcome, done.request_id))
    return JSONResponse({"id": done.request_id, "state": done.state, "published": done.published, **now,
                         **({} if done.waits else {"not_published": f"request {done.request_id} is {now['state']}: "
                                                                    "a replay sends it only while it waits"}),
                         **({} if done.new else {"replayed": True}),
                         **({"paused": "the training loop is paused: the request is kept and runs when it is "
                                       "resumed"} if done.paused and done.waits else {}),
                         **_unsent(done.not_sent, "the training sweep (hourly) publishes it")}, status_code=202)


async def promote_version(request: Request) -> JSONResponse:
    """Make a version champion (operator).
    ---
    summary: "Operator: make a model version champion (recorded), then nowcast"
    tags: [operators]
    security: [{bearer: []}]
    requestBody:
      content:
        application/json:
          schema: {type: object, additionalProperties: false,
                   properties: {reason: {type: string, minLength: 1, maxLength: 500},
                                force: {type: boolean, description: "promote a version the gates rejected or the
                                  monitor rolled back; the override is recorded with the decision"}}}
    responses:
      200: {description: "champion, changed, forced_over_decision (when forced over a verdict), and
        nowcast: requested, or why not (the next scheduled one serves the new champion)"}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      404: {$ref: "#/components/responses/NotFound"}
      409:
        description: "the gates rejected the version or the monitor rolled it back (the decision is named;
          send force: true to override),
          or its artifact failed verification"
        content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
      413: {$ref: "#/components/responses/TooLarge"}
      415: {$ref: "#/components/responses/UnsupportedMediaType"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    operator = await run_in_threadpool(require_operator, request)
    version = _version_number(request)
    body = await _json_body(request, takes=("reason", "force"))
    reason = _reason(body)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise HTTPException(422, f"force must be true or false, got {str(force)[:40]!r}")
    settings = await run_in_threadpool(_scoped_settings, request)
    try:
        result = await run_in_threadpool(lifecycle.operator_promote, version, reason, settings, operator, force)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except lifecycle.RejectedByGates as exc:
        raise HTTPException(409, f'{str(exc).rstrip(".")}; send "force": true to promote it anyway') from None
    except lifecycle.ArtifactRefused as exc:
        raise HTTPException(409, str(exc)) from None
    if result["changed"]:
        result["nowcast"] = await _request_nowcast(settings)
    return JSONResponse(result)


async def rollback(request: Request) -> JSONResponse:
    """Put the previous champion back (operator).

    A rollback names no target, so a retry whose first answer was lost would find nothing to roll
    back to and answer 409, as if the rollback had failed. With an Idempotency-Key (the client's own,
    as for a training request) a retry is recognised: it answers the first rollback's outcome with
    changed false and replayed true (and champion_now when the champion has moved since), asks for
    no nowcast and changes nothing. Without one, a second rollback cannot be told from a retry: the
    409 stays, since rolling back once more would be the wrong answer to a retry.
    ---
    summary: "Operator: put the previous champion back (409 when there is none), then nowcast"
    tags: [operators]
    security: [{bearer: []}]
    requestBody:
      content:
        application/json:
          schema: {type: object, additionalProperties: false,
                   properties: {reason: {type: string, minLength: 1, maxLength: 500}}}
    parameters:
      - {name: Idempotency-Key, in: header, required: false, schema: {type: string, minLength: 1, maxLength: 128},
         description: "the client's own key: a retry with it gets the first rollback's outcome back
           (changed false, replayed true), not a 409 nor a second rollback"}
    responses:
      200: {description: "champion, rolled_back_from, changed (false: a retry with the same Idempotency-Key,
        replayed true, champion_now when the champion has moved since), and nowcast: requested, or why not
        (only when changed)"}
      400: {$ref: "#/components/responses/BadRequest"}
      401: {$ref: "#/components/responses/Unauthorized"}
      404: {$ref: "#/components/responses/NotFound"}
      409:
        description: "no previous champion (a retry without its Idempotency-Key too), its artifact failed
          verification, or the Idempotency-Key already names a rollback for another reason"
        content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}
      413: {$ref: "#/components/responses/TooLarge"}
      415: {$ref: "#/components/responses/UnsupportedMediaType"}
      422: {$ref: "#/components/responses/Unprocessable"}
    """
    operator = await run_in_threadpool(require_operator, request)
    idempotency_key = _idempotency_key(request)
    reason = _reason(await _json_body(request, takes=("reason",)))
    settings = await run_in_threadpool(_scoped_settings, request)
    try:
        result = await run_in_threadpool(lifecycle.operator_rollback, reason, settings, operator, idempotency_key)
    except (LookupError, lifecycle.ArtifactRefused, lifecycle.IdempotencyKeyReused) as exc:
        raise HTTPException(409, str(exc)[:500]) from None
    if result["changed"]:
        result["nowcast"] = await _request_nowcast(settings)
    return JSONResponse(result)
