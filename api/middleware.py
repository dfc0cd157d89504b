"""Cross-cutting HTTP concerns, in the order a request meets them: metrics (outermost, so
429s and 413s are counted), CORS when origins are configured (FAIRVALUE_CORS_ORIGINS; off by
default), the request body limit, then per-client rate limits. CORS is outside the two limits so
their 413 and 429 carry its headers: inside them, a browser's script was refused the answer (a
CORS error, not the 429 and its Retry-After)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from api import webhooks
from api.limits import BodyLimitMiddleware, RateLimitMiddleware
from api.metrics import MetricsMiddleware
from fairvalue.settings import get_settings


def install(app: Starlette) -> None:
    # add_middleware wraps what is there: the last one added meets the request first.
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodyLimitMiddleware, self_limited=(webhooks.PATH, webhooks.LISTINGS_PATH))
    origins = [o.strip() for o in get_settings().cors_origins.split(",") if o.strip()]
    if origins:
        # Every method and request header the API reads, and every answer header a client acts on:
        # without them a browser's preflight refused Idempotency-Key, and a HEAD with If-None-Match
        # (a snapshot's headers), and its script could not read ETag.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "HEAD", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
                           expose_headers=["ETag", "Retry-After", "X-Snapshot-Id"])
    app.add_middleware(MetricsMiddleware, starlette_app_getter=lambda: app)
