"""The OpenAPI 3 document, generated from the app's routes.

Each handler's docstring carries its operation as YAML after a `---` line (Starlette's
SchemaGenerator convention). Path parameters are added here from the route's template, so one
handler serves both /v1/collections/{slug}/... and the default-collection alias without
declaring a parameter the alias does not have. A test compares the document's paths and
methods with the routes and validates it.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from starlette.applications import Starlette
from starlette.schemas import SchemaGenerator

import fairvalue
from fairvalue.answers import ITEM_KEY_PATTERN, MAX_OFFSET, SLUG_PATTERN
from fairvalue.lifecycle.operators import MAX_VERSION
from fairvalue.snapshot_files import MAX_ID as MAX_SNAPSHOT_ID
from fairvalue.snapshot_files import PUBLISHED
from models.times import HOUR_PRECISION_SOURCES, TIME_PRECISIONS

# The methods api.limits.RateLimitMiddleware counts (here, beneath it, so the document and the
# middleware read one list): the reads. A webhook's or an operator's POST is never answered 429.
RATE_LIMITED_METHODS = ("GET", "HEAD")

# What each path parameter takes, as the reads check it (fairvalue.answers, fairvalue.snapshot_files):
# "maxLength: 64" let a client's generated slug be any text, which every read refuses (400), and
# a snapshot id past what the reads take (or 0) matched "[0-9]{1,10}". The examples are the
# bundled market's, so a generated request reaches a valued item and not a 404 only.
PATH_PARAMS = {
    "slug": {"description": "collection slug, e.g. cryptopunks", "example": "cryptopunks",
             "schema": {"type": "string", "pattern": f"^{SLUG_PATTERN}$"}},
    "item_id": {"description": "item id within the collection, e.g. 7804", "example": "7804",
                "schema": {"type": "string", "pattern": f"^{ITEM_KEY_PATTERN}$"}},
    "version": {"description": "model version number", "schema": {"type": "integer", "minimum": 1,
                                                                  "maximum": MAX_VERSION}},
    "snapshot": {"description": "published (the one published now) or a snapshot id, as an item's history names them",
                 "example": PUBLISHED,
                 "schema": {"anyOf": [{"type": "string", "enum": [PUBLISHED]},
                                      {"type": "integer", "minimum": 1, "maximum": MAX_SNAPSHOT_ID}]}},
}

# A window's `from` or `to` as fairvalue.answers.parse_time takes it: an ISO date or date-time in
# the years 1970 to 2200 (EARLIEST_TIME, LATEST_TIME). "format: date-time" alone refused the dates
# the reads take and took the years they refuse.
WINDOW_BOUND = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}],
                "pattern": "^(19[7-9][0-9]|2[01][0-9]{2}|2200)-"}

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
COMPONENTS = {
    "schemas": {
        "Error": {"type": "object", "required": ["error", "status"],
                  "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
        "Sale": {"type": "object", "required": ["event_id", "timestamp", "item_id", "price"],
                 "properties": {"event_id": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"},
                                "item_id": {"type": "string"}, "price": {"type": "number"},
                                "seller": {"type": "string"}, "buyer": {"type": "string"},
                                "source": {"type": "string"},
                                "time_precision": {
                                    "type": "string", "enum": list(TIME_PRECISIONS),
                                    "description": "how precisely timestamp is known; default: the source's "
                                                   f"(hour for {', '.join(sorted(HOUR_PRECISION_SOURCES))}, "
                                                   "else second); the first report of an event is kept"}}},
        "Listing": {"type": "object", "required": ["event_id", "timestamp", "item_id", "price"],
                    "properties": {"event_id": {"type": "string"},
                                   "timestamp": {"type": "string", "format": "date-time",
                                                 "description": "when the item was listed or withdrawn"},
                                   "item_id": {"type": "string"},
                                   "price": {"type": "number", "nullable": True,
                                             "description": "the asking price; null withdraws the listing"},
                                   "expires_at": {"type": "string", "format": "date-time", "nullable": True},
                                   "source": {"type": "string",
                                              "description": "the marketplace; each keeps its own offer"}}},
    },
    "responses": {
        "BadRequest": {"description": "a parameter is malformed, given twice, or not one the operation takes "
                                      "(the error names it and the closest it takes)", "content": ERROR},
        "Unauthorized": {"description": "missing, invalid or revoked credentials", "content": ERROR},
        "NotFound": {"description": "no such collection, item or version", "content": ERROR},
        "TooLarge": {"description": "request body over FAIRVALUE_MAX_BODY_BYTES", "content": ERROR},
        "UnsupportedMediaType": {"description": "the body is declared as another format than JSON (no header, "
                                                "a form or text/plain is read as JSON)", "content": ERROR},
        "Unprocessable": {"description": "well-formed but invalid body", "content": ERROR},
        "NotReady": {"description": "no published snapshot (or champion) yet", "content": ERROR},
        "Lost": {"description": "stored data the answer needs is gone or corrupt; no retry helps, an operator "
                                "must restore it", "content": ERROR},
        "Unavailable": {"description": "the artifact store does not give back what the answer needs now (down, "
                                       "timing out): retry after Retry-After seconds", "content": ERROR,
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
        "RateLimited": {"description": "too many requests from this client; see Retry-After", "content": ERROR,
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                   "description": "`fairvalue tokens create --name NAME` prints one"}},
}

_generator = SchemaGenerator({})


@cache
def query_names(endpoint) -> tuple[str, ...]:
    """The query parameters a handler takes, in order: the `in: query` parameters of its
    docstring's OpenAPI block, the list the document publishes for it. A page declares its own the
    same way (its block stays out of the document). Routes refuse any other (api.deps.Route)."""
    if not re.search(r"^\s*---\s*$", endpoint.__doc__ or "", re.M):  # no block: prose is no YAML
        return ()
    operation = _generator.parse_docstring(endpoint) or {}
    return tuple(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")


def _query_param(param: dict) -> dict:
    """A declared query parameter with what every read does alike (api.deps): an empty value
    (`?limit=`, an empty form field) reads as the parameter not given, and an offset is at most
    MAX_OFFSET (fairvalue.answers.page_bounds). Not written in each docstring, so not forgotten in one."""
    if param.get("in") != "query":
        return param
    param = {**param, "schema": dict(param.get("schema", {}))}
    if not param.get("required"):
        param["allowEmptyValue"] = True
    if param["name"] == "offset":
        param["schema"].setdefault("maximum", MAX_OFFSET)
    if param["name"] in ("from", "to"):  # a window's bound (fairvalue.answers.parse_window)
        param["schema"] = WINDOW_BOUND
    return param


def _operation(endpoint, path: str, method: str) -> dict:
    operation = dict(_generator.parse_docstring(endpoint) or {})
    operation.setdefault("responses", {200: {"description": "OK"}})
    names = re.findall(r"{([^}:]+)}", path)
    declared = [_query_param(p) for p in operation.get("parameters", [])]
    operation["parameters"] = [{"name": n, "in": "path", "required": True, **PATH_PARAMS.get(n, {"schema": {
        "type": "string"}})} for n in names] + declared
    if not operation["parameters"]:
        del operation["parameters"]
    # Every route refuses a query parameter it does not take (api.deps.Route; the webhooks after the signature).
    operation["responses"].setdefault(400, {"$ref": "#/components/responses/BadRequest"})
    limited = path.startswith("/v1/") and method.upper() in RATE_LIMITED_METHODS
    if limited and "RateLimited" not in str(operation["responses"]):
        operation["responses"][429] = {"$ref": "#/components/responses/RateLimited"}
    operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
    first_line = (endpoint.__doc__ or "").strip().splitlines()
    if first_line and "description" not in operation:
        operation["description"] = first_line[0]
    operation["operationId"] = f"{endpoint.__name__}:{path}"
    return operation


def build(app: Starlette) -> dict:
    paths: dict[str, dict] = {}
    for info in _generator.get_endpoints(app.routes):
        paths.setdefault(info.path, {})[info.http_method] = _operation(info.func, info.path, info.http_method)
    return {
        "openapi": "3.0.3",
        "info": {"title": "fairvalue", "version": fairvalue.__version__,
                 "description": "Live fair values for collectibles markets, with a forward track record. "
                 "Errors are JSON {error, status}."},
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


@lru_cache(maxsize=4)
def _cached(app_id: int, app: Starlette) -> dict:
    return build(app)


def document(app: Starlette) -> dict:
    return _cached(id(app), app)
