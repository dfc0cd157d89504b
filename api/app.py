"""The Starlette application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from api import errors, items, models, ops, webhooks


def create_app() -> Starlette:
    routes = [
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/v1/items/{item_id}", items.get_item, methods=["GET"]),
        Route("/v1/items/{item_id}/explanation", items.explain_item, methods=["GET"]),
        Route("/v1/valuations", items.bulk_valuations, methods=["GET"]),
        Route("/v1/queue", ops.queue_status, methods=["GET"]),
        Route("/v1/webhooks/sales", webhooks.receive_sales, methods=["POST"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/rollback", models.rollback, methods=["POST"]),
        Route("/v1/models/{version}/promote", models.promote_version, methods=["POST"]),
        Route("/v1/training-requests", models.list_training_requests, methods=["GET"]),
        Route("/v1/training-requests", models.create_training_request, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: errors.http_exception, Exception: errors.unhandled},
    )


app = create_app()
