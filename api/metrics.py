"""Prometheus metrics of the API process (served at /metrics).

Request count and latency by route template and status, predictions served by signal, webhook
rows by outcome and rejected rows and refused calls by reason; at scrape time, queue depth per
queue, the champion version (an info metric), the age of each collection's published snapshot,
whether each loop is paused, training requests by state, each task's last success and the
promotion decisions. Task metrics are exported by the workers themselves (tasks/metrics.py),
each on its own port.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from models.listings import ListingReason
from models.validation import Reason

log = logging.getLogger("fairvalue.metrics")
REGISTRY = CollectorRegistry()

REQUESTS = Counter("fairvalue_http_requests", "HTTP requests by route template, method and status",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("fairvalue_http_request_duration_seconds", "HTTP request latency by route template",
                    ["route", "method"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PREDICTIONS = Counter("fairvalue_predictions_served", "Valuations served by the API, by signal", ["signal"],
                      registry=REGISTRY)
WEBHOOK_SALES = Counter("fairvalue_webhook_sales", "Sales received by webhook, by outcome", ["outcome"],
                        registry=REGISTRY)
WEBHOOK_LISTINGS = Counter("fairvalue_webhook_listings", "Listing events received by webhook, by outcome",
                           ["outcome"], registry=REGISTRY)
WEBHOOK_REJECTED_ROWS = Counter("fairvalue_webhook_rejected_rows", "Rows a webhook call rejected (kept in "
                                "rejected_sales / rejected_listings), by webhook and reason (as the answer's "
                                "rejected_by_reason)", ["webhook", "reason"], registry=REGISTRY)
WEBHOOK_REFUSALS = Counter("fairvalue_webhook_refusals", "Webhook calls refused whole (nothing ingested), by "
                           "reason: the outcome the delivery is recorded with", ["reason"], registry=REGISTRY)
# Each signal's child, looked up once: labels() takes a lock, and every read counts its signals.
_SERVED = {signal: PREDICTIONS.labels(signal) for signal in ("BUY", "SELL", "HOLD")}
for _outcome in ("accepted", "duplicate", "rejected"):
    WEBHOOK_SALES.labels(_outcome)
    WEBHOOK_LISTINGS.labels(_outcome)


def predictions_served(signals: list[str]) -> None:
    # One increment per signal, not per valuation: a 100-id bulk read made 100 label lookups.
    for signal in set(signals):
        (_SERVED.get(signal) or PREDICTIONS.labels(signal)).inc(signals.count(signal))


# Label values come from the code's own reasons (models.validation.Reason, models.listings.ListingReason,
# the refusal outcomes of api/webhooks.py); anything else is "other", so the series stay bounded
# whatever a caller sends.
ROW_REASONS = frozenset(v for cls in (Reason, ListingReason) for k, v in vars(cls).items() if k.isupper())
REFUSAL_REASONS = frozenset({"too_large", "unsigned", "malformed", "bad_signature", "stale", "replay",
                             "unknown_query_parameter", "unsupported_media_type", "not_taken", "conflict"})
_WEBHOOK_OF = {id(WEBHOOK_SALES): "sales", id(WEBHOOK_LISTINGS): "listings"}


def webhook_outcome(accepted: int, duplicate: int, rejected: int, counter: Counter,
                    reasons: dict[str, int] | None = None) -> None:
    """Count one call's rows by outcome (WEBHOOK_SALES or WEBHOOK_LISTINGS), and its rejected rows
    by reason."""
    counter.labels("accepted").inc(accepted)
    counter.labels("duplicate").inc(duplicate)
    counter.labels("rejected").inc(rejected)
    webhook = _WEBHOOK_OF.get(id(counter), "other")
    for reason, count in (reasons or {}).items():
        WEBHOOK_REJECTED_ROWS.labels(webhook, reason if reason in ROW_REASONS else "other").inc(count)


def webhook_refused(reason: str) -> None:
    """Count a webhook call refused whole, by its recorded outcome."""
    WEBHOOK_REFUSALS.labels(reason if reason in REFUSAL_REASONS else "other").inc()


class StateCollector(Collector):
    """Read at scrape time: what the broker and the database say now."""

    def collect(self):
        from fairvalue import queue_reads

        depth = GaugeMetricFamily("fairvalue_queue_depth", "Messages waiting per queue", labels=["queue"])
        depths, unacked = queue_reads.broker_counts()
        for name, count in depths.items():
            if count is not None:
                depth.add_metric([name], count)
        yield depth
        if unacked is not None:
            yield GaugeMetricFamily("fairvalue_queue_unacked", "Messages delivered to a worker and not yet "
                                    "acknowledged (running, or held by a dead worker until the visibility timeout)",
                                    value=unacked)
        champion = InfoMetricFamily("fairvalue_champion_model", "The champion model version per collection",
                                    labels=["collection"])
        age = GaugeMetricFamily("fairvalue_published_snapshot_age_seconds",
                                "Seconds since each collection's published snapshot was published",
                                labels=["collection"])
        try:
            for row in _champions_and_snapshots():
                slug, version, estimator, sha, published_at = row
                if version is not None:
                    champion.add_metric([slug], {"version": str(version), "estimator": estimator,
                                                 "sha256": sha[:12]})
                if published_at is not None:
                    age.add_metric([slug], max(0.0, time.time() - published_at.timestamp()))
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("state metrics unavailable: %s", exc)
        yield champion
        yield age
        paused = GaugeMetricFamily("fairvalue_loop_paused", "1 while an operator has paused the loop "
                                   "(fairvalue pause), else 0", labels=["loop"])
        try:
            for loop, is_paused in _loops_paused().items():
                paused.add_metric([loop], 1.0 if is_paused else 0.0)
        except Exception as exc:
            log.warning("loop states unavailable: %s", exc)
        yield paused
        yield from _database_counts()


def _database_counts():
    """Training requests by state, each task's last success, the promotion decisions and the abandoned
    task runs, from four grouped queries at scrape time (the tables are the one place these facts are kept; retention
    keeps each task's latest run, so a last success is not lost to it)."""
    from prometheus_client.core import CounterMetricFamily

    by_state = GaugeMetricFamily("fairvalue_training_requests", "Training requests by state (queued, claimed, "
                                 "training, decided, failed), every collection", labels=["state"])
    last_ok = GaugeMetricFamily("fairvalue_task_last_success_timestamp_seconds", "When each task last finished "
                                "ok (unix seconds), as recorded in task_runs", labels=["task"])
    abandoned_runs = GaugeMetricFamily("fairvalue_task_runs_abandoned", "Task runs the sweep marked abandoned "
                                       "(still running long after any task may run: their worker died), by task, "
                                       "as task_runs keeps them", labels=["task"])
    decisions = CounterMetricFamily("fairvalue_promotion_decisions", "Promotion decisions recorded, by decision "
                                    "(promote, shadow, reject, rollback) and by whom (gates, monitor, operator)",
                                    labels=["decision", "by"])
    try:
        states, successes, decided, abandoned = _counts_from_database()
    except Exception as exc:  # a scrape must not fail because the database is down
        log.warning("database counts unavailable: %s", exc)
        return
    for state, count in states.items():
        by_state.add_metric([state], count)
    for task, finished_at in successes.items():
        last_ok.add_metric([task], finished_at.replace(tzinfo=finished_at.tzinfo or UTC).timestamp())
    for (decision, by), count in decided.items():
        decisions.add_metric([decision, by], count)
    for task, count in abandoned.items():
        abandoned_runs.add_metric([task], count)
    yield by_state
    yield last_ok
    yield abandoned_runs
    yield decisions


def _counts_from_database():
    from sqlalchemy import func
    from sqlmodel import select

    from models import gates
    from storage import requests
    from storage.db import session_scope
    from storage.runs import ABANDONED, OK
    from storage.tables import PromotionDecision, TaskRun
    from tasks import names

    with session_scope() as session:
        states = {state: 0 for state in requests.STATES} | requests.counts_by_state(session)
        successes = dict(session.exec(select(TaskRun.task_name, func.max(TaskRun.finished_at))
                                      .where(TaskRun.status == OK).group_by(TaskRun.task_name)).all())
        # Every known label set from the first scrape, at 0 until it happens, so an alert on its
        # increase (a first rollback, a first abandoned run) has a series to compare against.
        decided = {(d, by): 0 for d in gates.RECORDED for by in gates.DECIDERS}
        decided |= {(d, by): n for d, by, n in session.exec(
            select(PromotionDecision.decision, PromotionDecision.decided_by, func.count())
            .group_by(PromotionDecision.decision, PromotionDecision.decided_by)).all()}
        abandoned = dict.fromkeys(names.ALL, 0)
        abandoned |= dict(session.exec(select(TaskRun.task_name, func.count())
                                       .where(TaskRun.status == ABANDONED).group_by(TaskRun.task_name)).all())
    return states, {task: at for task, at in successes.items() if at is not None}, decided, abandoned


def _loops_paused() -> dict[str, bool]:
    """Every loop, paused or not (a loop never paused has no stored state)."""
    from fairvalue.lifecycle import LOOPS
    from fairvalue.queue_reads import paused_loops
    from storage.db import session_scope

    with session_scope() as session:
        paused = {p["loop"] for p in paused_loops(session)}
    return {loop: loop in paused for loop in LOOPS}


def _champions_and_snapshots():
    from sqlmodel import select

    from storage.db import session_scope
    from storage.registry import CHAMPION
    from storage.tables import Collection, ModelAlias, ModelVersion, NowcastSnapshot, PublishedSnapshot

    with session_scope() as session:
        collections = session.exec(select(Collection)).all()
        out = []
        for coll in collections:
            version = session.exec(select(ModelVersion).join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
                                   .where(ModelAlias.collection_id == coll.id, ModelAlias.alias == CHAMPION)).first()
            published = session.exec(select(NowcastSnapshot.published_at).join(
                PublishedSnapshot, PublishedSnapshot.snapshot_id == NowcastSnapshot.id)
                .where(PublishedSnapshot.collection_id == coll.id)).first()
            out.append((coll.slug, version.version if version else None, version.estimator if version else "",
                        version.sha256 if version else "", published))
        return out


REGISTRY.register(StateCollector())


# HTTP methods kept as label values; any other is "other", or each made-up method a client sends
# (the server answers 405) would be a new series for as long as the process lives.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def route_template(app, scope) -> str:
    """The matched route's path template (bounded label values); 'unmatched' otherwise. A path
    matched with another method (a 405) is its route's, as the router picks it: the first full
    match, else the first partial one. Only a path no route has is 'unmatched'."""
    partial = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
        if match == Match.PARTIAL and partial is None:
            partial = route.path
    return partial or "unmatched"


class MetricsMiddleware:
    """Outermost middleware: counts every response, 429s and 413s included."""

    def __init__(self, app, starlette_app_getter):
        self.app = app
        self._starlette = starlette_app_getter
        self._routes_of: dict[object, list] | None = None  # endpoint -> its routes, in the router's order
        self._children: dict[tuple[str, str, str], tuple] = {}  # labels -> (request counter, latency histogram)

    def _route_template(self, scope) -> str:
        """route_template, trying first only the routes of the endpoint the router picked (it left
        it in the scope): matching every route per request was 10 % of a cached item read. The
        first full match among them is the router's, so the answer is route_template's."""
        if self._routes_of is None:
            self._routes_of = {}
            for route in self._starlette().router.routes:
                self._routes_of.setdefault(getattr(route, "endpoint", None) or getattr(route, "app", None),
                                           []).append(route)
        for route in self._routes_of.get(scope.get("endpoint"), ()):
            if route.matches(scope)[0] == Match.FULL:
                return route.path
        return route_template(self._starlette(), scope)

    def _metrics(self, route: str, method: str, status: str) -> tuple:
        """The labelled children, kept: labels() validates and locks on every call."""
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (REQUESTS.labels(route, method, status), LATENCY.labels(route, method))
        return found

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"  # a client can send any word
            route = "/static" if scope.get("path", "").startswith("/static/") else self._route_template(scope)
            requests, latency = self._metrics(route, method, str(status["code"]))
            requests.inc()
            latency.observe(time.perf_counter() - start)


def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics.
    ---
    summary: Prometheus metrics of the API (text exposition format)
    tags: [operations]
    responses:
      200: {description: "metrics", content: {text/plain: {schema: {type: string}}}}
    """
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
