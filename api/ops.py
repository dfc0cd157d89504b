"""Health, readiness and queue status."""

from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.deps import collection_or_404, iso
from storage.db import get_engine, session_scope
from storage.requests import counts_by_state
from storage.runs import last_runs
from storage.snapshots import published_snapshot
from tasks import queues


def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _broker_check() -> str | None:
    from tasks.app import app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    broker_error = _broker_check()
    checks["broker"] = "ok" if broker_error is None else f"down: {broker_error[:200]}"
    if checks["database"] == "ok":
        with session_scope() as session:
            snap = published_snapshot(session, collection_or_404(session))
            checks["snapshot"] = f"ok: {snap.id} as of {iso(snap.as_of)}" if snap else "none published"
    ready = all(v.startswith("ok") for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per queue, read from the broker (LLEN on Redis)."""
    from tasks.app import app

    depths: dict[str, int | None] = {}
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            for name in queues.ALL:
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:
                    depths[name] = 0  # a queue nobody declared yet holds nothing
    except Exception:
        depths = {name: None for name in queues.ALL}
    return depths


def workers_seen() -> list[str] | None:
    from tasks.app import app

    try:
        replies = app.control.inspect(timeout=1.0).ping() or {}
        return sorted(replies)
    except Exception:
        return None  # the transport has no broadcast (the embedded filesystem broker)


def queue_status(request: Request) -> JSONResponse:
    with session_scope() as session:
        by_state = counts_by_state(session)
        runs = {
            name: {"status": r.status, "started_at": iso(r.started_at), "finished_at": iso(r.finished_at)}
            for name, r in last_runs(session).items()
        }
    return JSONResponse(
        {
            "queues": queue_depths(),
            "workers": workers_seen(),
            "training_requests": by_state,
            "last_runs": runs,
        }
    )
