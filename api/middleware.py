"""Cross-cutting HTTP concerns, in the order a request meets them: metrics (outermost, so
429s and 413s are counted), the request body limit, per-client rate limits, then CORS when
origins are configured (FAIRVALUE_CORS_ORIGINS; off by default)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from api import webhooks
from api.limits import BodyLimitMiddleware, RateLimitMiddleware
from api.metrics import MetricsMiddleware
from fairvalue.settings import get_settings


def install(app: Starlette) -> None:
    # add_middleware wraps what is there: the last one added meets the request first.
    origins = [o.strip() for o in get_settings().cors_origins.split(",") if o.strip()]
    if origins:
        # Every request header the API reads, and every answer header a client acts on: without
        # them a browser's preflight refused Idempotency-Key and its script could not read ETag.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
                           expose_headers=["ETag", "Retry-After", "X-Snapshot-Id"])
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodyLimitMiddleware, self_limited=(webhooks.PATH, webhooks.LISTINGS_PATH))
    app.add_middleware(MetricsMiddleware, starlette_app_getter=lambda: app)
