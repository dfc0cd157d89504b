"""What the broker and the workers hold, as /v1/queue, /metrics and `fairvalue status` read it:
the messages waiting per queue and delivered but not acknowledged (Redis through kombu), the
workers answering a ping (Celery's broadcast, kept a few seconds), the paused loops, and the
last run per task. Nothing here knows about HTTP.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from sqlmodel import Session, select

from fairvalue.answers import HIDDEN, error_head, hidden, iso
from storage.db import session_scope


def broker_counts() -> tuple[dict[str, int | None], int | None]:
    """What the broker holds, in one connection: the messages waiting per queue (None each when it
    is down), and the messages delivered to a worker and not yet acknowledged (on Redis, kombu's
    `unacked` hash: running now, or held by a worker that died until the visibility timeout gives
    them back, which no queue's depth shows; None when the transport keeps no such record)."""
    from tasks import queues
    from tasks.app import app

    depths: dict[str, int | None] = {}
    unacked = None
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for name in queues.ALL:
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:
                    depths[name] = 0  # a queue nobody declared yet holds nothing
            if getattr(channel, "unacked_key", None) and hasattr(channel, "client"):  # the Redis transport
                unacked = int(channel.client.hlen(channel.unacked_key))
    except Exception:
        depths = {name: None for name in queues.ALL}
    return depths, unacked


# A ping collects replies until its timeout, so every /v1/queue read waited that long (2 s on the
# embedded broker): the answer is kept for a few seconds, and one read at a time pings.
WORKER_PING_TIMEOUT_SECONDS = 1.0
WORKERS_SEEN_KEPT_SECONDS = 10.0
_workers_seen_lock = threading.Lock()
_workers_seen: tuple[float, list[str] | None] = (-math.inf, None)  # (when pinged, the answer)


def workers_seen() -> list[str] | None:
    """The workers that answered a ping in the last WORKERS_SEEN_KEPT_SECONDS (a solo worker busy
    with a task answers none); None when the transport has no broadcast."""
    global _workers_seen
    from tasks.app import app

    with _workers_seen_lock:
        pinged_at, seen = _workers_seen
        if time.monotonic() - pinged_at < WORKERS_SEEN_KEPT_SECONDS:
            return seen
        try:
            seen = sorted(app.control.inspect(timeout=WORKER_PING_TIMEOUT_SECONDS).ping() or {})
        except Exception:
            seen = None  # the transport has no broadcast
        _workers_seen = (time.monotonic(), seen)
        return seen


def paused_loops(session: Session, people: bool = True) -> list[dict[str, Any]]:
    """The paused loops (every collection's): loop, the operator's reason, since when (ISO), by whom
    and a readable line, by loop name."""
    from fairvalue.outcomes import paused_line
    from storage.tables import LoopState

    states = session.exec(select(LoopState).where(LoopState.paused).order_by(LoopState.loop)).all()
    return [{"loop": s.loop, "reason": s.reason, "since": iso(s.updated_at), "by": hidden(s.changed_by, people),
             "text": paused_line(s.loop, s.reason, iso(s.updated_at), s.changed_by if people else "")}
            for s in states]


# The parts of a run's detail, at any depth (the monitor's shadow decision is a dict of its own),
# that carry an exception's text: it can name a host, an address or a path (a database error
# names its server, an S3 one its endpoint), so a reader without a token gets its head alone.
ERROR_TEXTS = ("error", "not_sent", "rollback_deferred", "rollback_refused")


def public_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A run's detail as a reader without an operator token sees it: no traceback, and of each
    error text only its head: what comes before its first colon or parenthesis ("OperationalError",
    "artifact of version 3 could not be read")."""
    out = {}
    for key, value in detail.items():
        if key == "traceback":
            continue
        if isinstance(value, dict):
            value = public_detail(value)
        elif key in ERROR_TEXTS:
            value = error_head(value, people=False)
        out[key] = value
    return out


def queue_status(people: bool = True) -> dict[str, Any]:
    """Depth per queue (LLEN on Redis), messages delivered and not acknowledged, workers answering
    a ping, training requests by state and those whose lease ran out, last run per task
    (`last_runs`, whatever the collection) and per task and collection, the last outcome of the
    policy and the monitor per collection
    (with a readable line), and the paused loops. Unless `people`, each worker's name
    (general@host, training@host) and who paused a loop are HIDDEN, and a run's error texts are
    cut to their type (public_detail)."""
    from fairvalue.outcomes import LOOP_TASKS
    from storage.requests import counts_by_state, expired_leases
    from storage.runs import last_runs

    def run_json(r) -> dict[str, Any]:
        return {"status": r.status, "started_at": iso(r.started_at), "finished_at": iso(r.finished_at),
                "collection": r.collection}

    with session_scope() as session:
        by_state = counts_by_state(session)
        leases_expired = expired_leases(session)
        latest = sorted(last_runs(session).items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[1].id))
        paused = paused_loops(session, people)
    runs: dict[str, dict[str, Any]] = {}
    for (name, _), r in sorted(latest, key=lambda kv: kv[1].id):  # the latest of any collection wins
        runs[name] = run_json(r)
    per_collection = [{"task": name, **run_json(r)} for (name, _), r in latest]
    outcomes = []
    for (name, collection), r in latest:
        if name in LOOP_TASKS and collection is not None:
            loop, line = LOOP_TASKS[name]
            detail = (r.detail or {}) if people else public_detail(r.detail or {})
            outcomes.append({"loop": loop, "collection": collection, "status": r.status,
                             "started_at": iso(r.started_at), "finished_at": iso(r.finished_at),
                             "summary": line(r.status, detail), "detail": detail})
    workers = workers_seen()
    if workers is not None and not people:
        workers = [HIDDEN] * len(workers)  # how many answered, not where they run
    depths, unacked = broker_counts()
    return {"queues": depths, "unacked": unacked, "workers": workers, "training_requests": by_state,
            "training_leases_expired": leases_expired, "last_runs": runs,
            "last_runs_by_collection": per_collection, "loop_outcomes": outcomes, "paused_loops": paused}
