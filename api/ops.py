"""Health, readiness and queue status."""

from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import is_operator
from fairvalue import reads
from fairvalue.errors import NotFound
from storage.db import get_engine, session_scope
from storage.snapshots import published_snapshot


def healthz(request: Request) -> JSONResponse:
    """Liveness.
    ---
    summary: The process is alive
    tags: [health]
    responses:
      200: {description: "status ok"}
    """
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
    """Readiness.
    ---
    summary: Database, broker and a published snapshot are there (503 otherwise)
    tags: [health]
    responses:
      200: {description: "ready, checks"}
      503: {description: "not ready, checks say why"}
    """
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
            try:
                snap = published_snapshot(session, reads.collection_row(session))
            except NotFound:  # a fresh database: nothing loaded yet is "not ready", not a 404
                snap = None
            checks["snapshot"] = f"ok: {snap.id} as of {reads.iso(snap.as_of)}" if snap else "none published"
    ready = all(v.startswith("ok") for v in checks.values())
    if ready:
        return JSONResponse({"ready": True, "checks": checks})
    failing = "; ".join(f"{name} {value}" for name, value in checks.items() if not value.startswith("ok"))
    return JSONResponse({"ready": False, "checks": checks, "error": f"not ready: {failing}", "status": 503},
                        status_code=503)


def queue_status(request: Request) -> JSONResponse:
    """Queue status.
    ---
    summary: Queue depths, workers seen, training requests by state, last runs, loop outcomes, paused loops
    description: >-
      last_runs is the latest run of each task whatever its collection; last_runs_by_collection the
      latest of each task and collection. loop_outcomes is the last outcome of the retrain policy and
      the monitor per collection: a readable summary and the run's whole detail (every number the
      decision looked at, its thresholds and notes). paused_loops lists each paused loop with the
      operator's reason and since when. Without a valid operator token, the workers' names and who
      paused a loop are "hidden".
    tags: [operations]
    responses:
      200:
        description: "queues, workers, training_requests, last_runs, last_runs_by_collection, loop_outcomes,
          paused_loops"
    """
    return JSONResponse(reads.queue_status(people=is_operator(request)))
