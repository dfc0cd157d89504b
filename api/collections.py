"""Collection reads: summary, signals, forward performance, backtest and market data."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.deps import etag_matches, float_param, int_param, slug_of, str_param, window_params
from fairvalue import market_reads, reads, signal_reads, snapshot_files, track_record


def list_collections(request: Request) -> JSONResponse:
    """The collections this deployment serves.
    ---
    summary: Every collection (slug, name, kind, currency, items, published snapshot) and the default one
    tags: [collections]
    responses:
      200: {description: "default (the slug the unprefixed /v1 routes serve) and collections"}
    """
    return JSONResponse(reads.collections())


def summary(request: Request) -> JSONResponse:
    """Floor, index, counts, champion and the published snapshot.
    ---
    summary: Collection summary (floor, index, counts, last snapshot)
    tags: [collections]
    responses:
      200: {description: "floor, ETH/USD, sales index, counts (items, sales, rejected, signals), snapshot"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(reads.summary(slug_of(request)))


def signals(request: Request) -> JSONResponse:
    """Signals of the published snapshot, filtered and paginated.
    ---
    summary: Signals, ordered by |deviation| then item id; cursor pagination pinned to one snapshot
    tags: [collections]
    parameters:
      - {name: signal, in: query, schema: {type: string, enum: [BUY, SELL, HOLD]},
         description: "in any case (buy, Buy); the answer's filters name it as here (fairvalue.answers.check_choice)"}
      - {name: type, in: query, schema: {type: string, maxLength: 100}, description: "item type, e.g. Alien"}
      - {name: trait, in: query, schema: {type: string, maxLength: 100}, description: "an attribute value"}
      - {name: min_deviation, in: query, schema: {type: number, minimum: 0, maximum: 1000000, exclusiveMaximum: true},
         description: "|price / fair value - 1| at least this, of the price the signal read (signal_basis)"}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
      - {name: cursor, in: query, schema: {type: string, maxLength: 100, pattern: "^[A-Za-z0-9_-]*=*$"},
         description: "next_cursor of the last page"}
    responses:
      200: {description: "signals, total, next_cursor, snapshot"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      503: {$ref: "#/components/responses/NotReady"}
    """
    return JSONResponse(signal_reads.signals_page(
        slug_of(request), signal=str_param(request, "signal"), item_type=str_param(request, "type"),
        trait=str_param(request, "trait"), min_deviation=float_param(request, "min_deviation"),
        limit=int_param(request, "limit", 50), cursor=str_param(request, "cursor")))


def performance(request: Request) -> JSONResponse:
    """Forward valuation metrics over a window.
    ---
    summary: Forward metrics (each sale and ask vs the last snapshot published before it), overall and by segment
    tags: [track record]
    parameters:
      - {name: from, in: query, description: "ISO date or date-time, in the years 1970 to 2200; a window spans at
         most ~10 years"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
    responses:
      200: {description: "model and previous-day floor metrics, the sale signals' KPIs (signals), the BUYs
        at asks judged by whether the asks were taken (ask_signals), segments, series per period, points"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(track_record.performance(slug_of(request), *window_params(request)))


def backtest(request: Request) -> JSONResponse:
    """Strategy backtest on the live forward pairs of a window (cards: on the replayed card-days).
    ---
    summary: Model-driven buying vs buy-all on the same forward pairs (Sharpe, Sortino, Calmar, drawdown)
    description: "A daily-priced collection (cards) holds, each day, the cards priced at least the BUY threshold
      under their forward fair value, against every priced card, each for one day (docs/cards.md)."
    tags: [track record]
    parameters:
      - {name: from, in: query, description: "ISO date or date-time, in the years 1970 to 2200; a window spans at
         most ~10 years"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
    responses:
      200: {description: "both strategies' measures, equity and drawdown curves, filtered counts"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(track_record.backtest_results(slug_of(request), *window_params(request)))


def market(request: Request) -> JSONResponse:
    """Daily market data.
    ---
    summary: Daily floor, ETH/USD and the sales index (default the last 365 days of data)
    description: "A daily-priced collection (cards) answers, per priced day, n_cards, median_price and its
      market index (100 x exp of the running sum of the cards' median daily log move) instead of floor and ETH/USD."
    tags: [collections]
    parameters:
      - {name: from, in: query, description: "ISO date or date-time, in the years 1970 to 2200; a window spans at
         most ~10 years"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
    responses:
      200: {description: "one row per day"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(market_reads.market(slug_of(request), *window_params(request)))


def list_snapshots(request: Request) -> JSONResponse:
    """The snapshots a collection published, and where each one's file is.
    ---
    summary: Published snapshots, newest first (offset pagination), each with its file's path
    tags: [collections]
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
      - {name: offset, in: query, schema: {type: integer, minimum: 0, default: 0}}
    responses:
      200: {description: "snapshots (id, as_of, valued_at, published_at, model_version, n_items, current, archived,
        thinned_at, file), total, next_offset"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
    """
    return JSONResponse(snapshot_files.published_snapshots(slug_of(request), int_param(request, "limit", 50),
                                                           int_param(request, "offset", 0)))


def snapshot_file(request: Request) -> Response:
    """A whole published snapshot as its archive file.
    ---
    summary: Every item of a published snapshot as gzip'd CSV (its archive), by id or the one published now
    description: "Columns: item_key, fair_value, p10, p90, signal, last_price, last_sale_at, ask_price, ask_at,
      signal_basis, deviation (the price the signal read and how far it strays; the last two are not in a
      snapshot made before they were recorded, migration 0019).
      The ETag is the file's sha256, the one recorded with its archive; an If-None-Match naming it is a 304.
      An archived numbered snapshot never changes; one past FAIRVALUE_RETENTION_DAYS is served whole from the
      archive. A snapshot id is at most 2147483647. A HEAD answers the headers without reading the archive
      (a Content-Length only for a file rebuilt from its rows, which is in hand to name its digest)."
    tags: [collections]
    responses:
      200: {description: "the snapshot's csv.gz", content: {application/gzip: {schema: {type: string, format: binary}}}}
      304: {description: "the file named by If-None-Match is unchanged"}
      400: {$ref: "#/components/responses/BadRequest"}
      404: {$ref: "#/components/responses/NotFound"}
      500: {$ref: "#/components/responses/Lost"}
      503: {description: "no snapshot is published yet (no Retry-After), or the artifact store cannot give the
              archive of a thinned snapshot now (retry after Retry-After seconds)",
            content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}},
            headers: {Retry-After: {schema: {type: integer}}}}
    """
    found = snapshot_files.snapshot_file(slug_of(request), request.path_params["snapshot"])
    final = found.archived and request.path_params["snapshot"] != snapshot_files.PUBLISHED
    headers = {"ETag": f'"{found.sha256}"',
               # The published one moves with each nowcast, and an unarchived one is a rebuild: ask
               # again, the ETag makes that cheap.
               "Cache-Control": "public, max-age=86400, immutable" if final else "no-cache"}
    if etag_matches(request, found.sha256):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{found.filename}"'
    headers["X-Snapshot-Id"] = str(found.snapshot_id)
    if request.method == "HEAD":  # the headers alone: reading the archive for them was a GET's cost
        return _headers_only(headers, found.size, "application/gzip")
    return Response(found.read_body(), media_type="application/gzip", headers=headers)


def _headers_only(headers: dict[str, str], size: int | None, media_type: str) -> Response:
    """A HEAD's answer: the GET's headers, its Content-Length only when `size` is known (Starlette
    would say 0, the length of the empty body sent)."""
    response = Response(media_type=media_type, headers=headers)
    if size is None:
        del response.headers["content-length"]
    else:
        response.headers["content-length"] = str(size)
    return response
