"""Item reads: one valuation, many at once, an item's history and its explanation."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import metrics
from api.deps import float_param, int_param, query_value, slug_of, window_params
from fairvalue import item_reads, reads
from fairvalue.errors import BadInput


def _answer(served: item_reads.Served) -> Response:
    metrics.predictions_served(served.signals)
    return Response(served.body, media_type="application/json")


# The two valuation reads are async: answered from the snapshot held in memory, they run on the
# event loop with no thread hop; only a pointer check, a snapshot load or a read the held
# snapshot cannot answer goes to a worker thread.
async def get_item(request: Request) -> Response:
    """Fair value, band, signal and last sale of one item.
    ---
    summary: One item's valuation from the published snapshot
    tags: [valuations]
    responses:
      200: {description: "fair value, p10-p90 band, signal, the price it read (signal_basis) and its deviation,
        open ask, last sale, snapshot, model version"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      503: {$ref: "#/components/responses/NotReady"}
    """
    slug, key = slug_of(request), request.path_params["item_id"]
    return _answer(item_reads.held_item(slug, key) or await run_in_threadpool(item_reads.item, slug, key))


async def bulk_valuations(request: Request) -> Response:
    """Many items from one snapshot.
    ---
    summary: Bulk valuations (at most 1000 ids) from one snapshot, plus the ids not found
    tags: [valuations]
    parameters:
      - {name: ids, in: query, required: true, description: "comma-separated item ids (at most 1000)",
         schema: {type: string, pattern: "^[ ,]*[A-Za-z0-9_.:-]{1,64}( *,[ ,]*([A-Za-z0-9_.:-]{1,64})?)* *$"}}
    responses:
      200: {description: "valuations, not_found, snapshot"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      503: {$ref: "#/components/responses/NotReady"}
    """
    raw = query_value(request, "ids", hint="ids takes a comma-separated list, e.g. ids=1,2,3")
    if not raw:
        raise BadInput("query parameter ids is required, e.g. ?ids=1,2,3")
    slug, keys = slug_of(request), item_reads.bulk_keys(raw.split(","))
    return _answer(item_reads.held_valuations(slug, keys) or await run_in_threadpool(item_reads.valuations, slug, keys))


def item_quote(request: Request) -> JSONResponse:
    """An asked price against the published value.
    ---
    summary: How an asked price (a listing or an offer) compares with the item's published value
    tags: [valuations]
    parameters:
      - {name: price, in: query, required: true,
         schema: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 1000000000000},
         description: "in the collection's currency, at most 1e12 (models.validation.MAX_PRICE)"}
    responses:
      200: {description: "price, fair value, band, deviation, the signal at the thresholds the published snapshot's
        signals were judged at (thresholds), where the price sits in the band (below_band, in_band, above_band),
        snapshot, model version"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      503: {$ref: "#/components/responses/NotReady"}
    """
    price = float_param(request, "price")
    if price is None:
        raise BadInput("query parameter price is required, e.g. ?price=65.5")
    return JSONResponse(item_reads.quote(slug_of(request), request.path_params["item_id"], price))


def item_history(request: Request) -> JSONResponse:
    """Published values over time and the item's sales.
    ---
    summary: An item's history of published values (oldest first) and its sales
    tags: [valuations]
    parameters:
      - {name: from, in: query, description: "ISO date or date-time, in the years 1970 to 2200"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 5000, default: 1000},
         description: "at most this many published values (the most recent)"}
    responses:
      200: {description: "published values and sales"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(reads.item_history(slug_of(request), request.path_params["item_id"],
                                           *window_params(request),
                                           int_param(request, "limit", 1000)))


def item_explanation(request: Request) -> JSONResponse:
    """Drivers and comparable sales behind the published value.
    ---
    summary: Why the item is worth its published value (drivers vs a typical item, comparable sales)
    tags: [valuations]
    parameters:
      - {name: top, in: query, schema: {type: integer, minimum: 1, maximum: 30, default: 5}}
      - {name: comps, in: query, schema: {type: integer, minimum: 0, maximum: 45, default: 10},
         description: "comparable sales per basis (rarest trait, type)"}
    responses:
      200: {description: "basis (floor, premium), drivers with their effect (on the log value) and effect_pct
        (in percent of value: 687.4 is +687.4 %), comparable sales, and whether the explanation reproduces the
        published value (matches_published, published_fair_value)"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      500: {$ref: "#/components/responses/Lost"}
      503: {description: "no published snapshot yet (no Retry-After), or the artifact store cannot give its model
              now (retry after Retry-After seconds)",
            content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}},
            headers: {Retry-After: {schema: {type: integer}}}}
    """
    return JSONResponse(reads.item_explanation(slug_of(request), request.path_params["item_id"],
                                               int_param(request, "top", 5), int_param(request, "comps", 10)))
