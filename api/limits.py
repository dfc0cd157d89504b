"""Request body size limit (413) and per-client rate limit of public reads (429 + Retry-After).

The rate limit is a fixed one-minute window per client IP, counted in Redis when the broker is
Redis (so every API process shares the count) and in this process's memory otherwise. Only
public GETs under /v1/ are limited: operator endpoints need a token and webhooks a signature.
If Redis fails, each API process counts alone for a while (RedisCounter), and says so once: a
Redis outage must neither take the API down, nor hold a request for its timeout each time, nor
flood the log.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.openapi import RATE_LIMITED_METHODS
from api.pages import error_page, wants_html
from fairvalue.settings import get_settings

log = logging.getLogger("fairvalue.limits")
WINDOW_SECONDS = 60


async def _send_error(send, status: int, reason: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": reason, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over FAIRVALUE_MAX_BODY_BYTES: by Content-Length up front, or while streaming.

    `self_limited` paths are left to their handler, which reads the body under the same limit and
    records the refusal (the sales webhook keeps every refused call it can: README, webhooks)."""

    def __init__(self, app, self_limited: tuple[str, ...] = ()):
        self.app = app
        self.self_limited = frozenset(self_limited)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.self_limited:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # no body (HTTP/1.1 framing): nothing to count
        limit = get_settings().max_body_bytes
        reason = f"request body larger than {limit} bytes"
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_error(send, 413, reason)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, reason)


class MemoryCounter:
    blocks = False  # counted in this process: no I/O, so no thread hop per request

    def __init__(self):
        self._counts: dict[tuple[str, int], int] = {}
        self._window = -1  # the latest window counted
        self._lock = threading.Lock()

    def hit(self, client: str, window: int) -> int:
        with self._lock:
            # Past windows go once, when a new one begins. Dropped on every hit past 10,000 keys
            # before, a minute of more clients than that made each request copy the whole count.
            if window > self._window:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
                self._window = window
            count = self._counts.get((client, window), 0) + 1
            self._counts[(client, window)] = count
            return count


class RedisCounter:
    """Counts shared by every API process; `name` keeps one count (the rate limit) apart from another.

    If Redis fails, this process counts alone for PAUSE_SECONDS (in memory, as without Redis)
    before it asks Redis again, and logs that once per pause."""

    blocks = True  # a Redis round trip: off the event loop
    PAUSE_SECONDS = 30

    def __init__(self, url: str, name: str = "ratelimit"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._name = name
        self._alone = MemoryCounter()
        self._shared_again_at = 0.0

    def hit(self, client: str, window: int) -> int:
        now = time.monotonic()
        if now >= self._shared_again_at:
            try:
                return self._shared_hit(client, window)
            except Exception as exc:
                self._shared_again_at = now + self.PAUSE_SECONDS
                log.warning("%s counted in this process for %d s: Redis failed: %s", self._name,
                            self.PAUSE_SECONDS, exc)
        return self._alone.hit(client, window)

    def _shared_hit(self, client: str, window: int) -> int:
        key = f"fairvalue:{self._name}:{client}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS + 5)
        return int(pipe.execute()[0])


async def count_hit(counter, client: str, window: int) -> int:
    """counter.hit off the event loop when it blocks (a Redis round trip), inline when it does not
    (MemoryCounter: no thread hop per request). RedisCounter handles Redis failures itself."""
    if getattr(counter, "blocks", True):
        return await run_in_threadpool(counter.hit, client, window)
    return counter.hit(client, window)


def counter_for_settings(name: str = "ratelimit"):
    """Counted in Redis when the broker is Redis (shared by every API process), else in memory."""
    url = get_settings().resolved_broker_url()
    return RedisCounter(url, name) if url.startswith(("redis://", "rediss://")) else MemoryCounter()


COLLECTION_PAGE = re.compile(r"/c/([^/]+)")  # a collection's pages (api/pages.py)

# Not counted: probes, the metrics scrape and static files. The pages are: they run the same reads
# as the API (a performance window of the cards is seconds of work).
UNLIMITED_PREFIXES = ("/healthz", "/readyz", "/metrics", "/static/")


class RateLimitMiddleware:
    def __init__(self, app, counter_factory=counter_for_settings):
        self.app = app
        self._factory = counter_factory
        self._counter = None

    async def __call__(self, scope, receive, send):
        limit = get_settings().rate_limit_per_minute
        if (scope["type"] != "http" or limit <= 0 or scope["method"] not in RATE_LIMITED_METHODS
                or scope["path"].startswith(UNLIMITED_PREFIXES)):
            return await self.app(scope, receive, send)
        if self._counter is None:
            self._counter = self._factory()
        client = (scope.get("client") or ("unknown", 0))[0]
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        count = await count_hit(self._counter, client, window)
        if count > limit:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
            reason = f"rate limit: {limit} requests per minute per client; retry after {retry_after} s"
            # Before routing there are no path parameters: the page's collection is read from its path.
            page_of = COLLECTION_PAGE.match(scope["path"])
            request = Request({**scope, "path_params": {"slug": page_of.group(1)} if page_of else {}})
            if wants_html(request):  # a browser on a page gets the site's error page, as for a 404
                page = error_page(request, 429, reason)
                page.headers["retry-after"] = str(retry_after)
                return await page(scope, receive, send)
            return await _send_error(send, 429, reason, [(b"retry-after", str(retry_after).encode())])
        await self.app(scope, receive, send)
