"""The Starlette application: routes, middleware, error handlers.

Every collection-scoped resource lives under /v1/collections/{slug}/...; the unprefixed
routes of the first release (/v1/items/{id}, /v1/valuations, /v1/models, ...) stay as aliases
for the default collection (FAIRVALUE_COLLECTION).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from starlette import routing
from starlette.applications import Starlette

from api import collections, docs, errors, items, metrics, middleware, models, ops, pages, webhooks
from api.deps import Route, share_allowed_methods  # Route refuses a query parameter its handler does not take
from fairvalue.settings import get_settings

COLLECTION = "/v1/collections/{slug}"


def _collection_routes(prefix: str) -> list[routing.Route]:
    """The routes every collection has; `prefix` is COLLECTION or "/v1" (default-collection aliases)."""
    return [
        Route(f"{prefix}/items/{{item_id}}", items.get_item, methods=["GET"]),
        Route(f"{prefix}/items/{{item_id}}/explanation", items.item_explanation, methods=["GET"]),
        Route(f"{prefix}/items/{{item_id}}/quote", items.item_quote, methods=["GET"]),
        Route(f"{prefix}/valuations", items.bulk_valuations, methods=["GET"]),
        Route(f"{prefix}/models", models.list_models, methods=["GET"]),
        Route(f"{prefix}/models/rollback", models.rollback, methods=["POST"]),
        Route(f"{prefix}/models/{{version}}/promote", models.promote_version, methods=["POST"]),
        Route(f"{prefix}/models/{{version}}/diagnostics", models.version_diagnostics, methods=["GET"]),
        Route(f"{prefix}/training-requests", models.list_training_requests, methods=["GET"]),
        Route(f"{prefix}/training-requests", models.create_training_request, methods=["POST"]),
    ]


def routes() -> list[routing.BaseRoute]:
    return share_allowed_methods([
        *_collection_routes("/v1"),  # first: the router tries routes in order, and these are the busiest
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", metrics.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", docs.openapi_json, methods=["GET"], include_in_schema=False),
        Route("/docs", docs.docs_page, methods=["GET"], include_in_schema=False),
        Route("/v1/queue", ops.queue_status, methods=["GET"]),
        # The webhooks refuse an unknown query parameter themselves, after the signature, so that
        # refusal is recorded in webhook_deliveries like their others.
        routing.Route(webhooks.PATH, webhooks.receive_sales, methods=["POST"]),
        routing.Route(webhooks.LISTINGS_PATH, webhooks.receive_listings, methods=["POST"]),
        Route("/v1/collections", collections.list_collections, methods=["GET"]),
        Route(COLLECTION, collections.summary, methods=["GET"]),
        *_collection_routes(COLLECTION),
        Route(f"{COLLECTION}/items/{{item_id}}/history", items.item_history, methods=["GET"]),
        Route(f"{COLLECTION}/signals", collections.signals, methods=["GET"]),
        Route(f"{COLLECTION}/performance", collections.performance, methods=["GET"]),
        Route(f"{COLLECTION}/backtest", collections.backtest, methods=["GET"]),
        Route(f"{COLLECTION}/market", collections.market, methods=["GET"]),
        Route(f"{COLLECTION}/snapshots", collections.list_snapshots, methods=["GET"]),
        Route(f"{COLLECTION}/snapshots/{{snapshot}}", collections.snapshot_file, methods=["GET"]),
        Route(f"{COLLECTION}/decisions", models.list_decisions, methods=["GET"]),
        *pages.routes(),  # the web pages (api/pages.py), outside the OpenAPI document
    ])


class InsecureConfiguration(RuntimeError):
    pass


@asynccontextmanager
async def refuse_development_secrets(app: Starlette):
    """Secrets come only from the environment: on real servers the API will not start with
    the development webhook secret (anyone could sign sales with it)."""
    problems = get_settings().insecure_secrets()
    if problems:
        raise InsecureConfiguration("refusing to start: " + "; ".join(problems))
    yield


def create_app() -> Starlette:
    app = Starlette(routes=routes(), exception_handlers=errors.HANDLERS, lifespan=refuse_development_secrets)
    middleware.install(app)
    return app


app = create_app()
