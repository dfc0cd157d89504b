"""Health, readiness and queue status."""

from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import is_operator
from fairvalue import answers, queue_reads, reads
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
            conn.ensure_connection(max_retries=0, timeout=2)  # one attempt: a probe must answer in time
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _database_check() -> str:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def _snapshot_check() -> str:
    with session_scope() as session:
        try:
            snap = published_snapshot(session, reads.collection_row(session))
        except NotFound:  # a fresh database: nothing loaded yet is "not ready", not a 404
            snap = None
        return f"ok: {snap.id} as of {answers.iso(snap.as_of)}" if snap else "none published"


# Without these a replica cannot answer reads: 503, the balancer takes it out. The broker is not
# one of them: reads go on, a webhook still stores its sales (202, its follow-up "not enqueued"),
# so a Redis outage leaves every replica serving, "degraded", rather than none.
NEEDED = ("database", "snapshot")


def readyz(request: Request) -> JSONResponse:
    """Readiness.
    ---
    summary: Database and a published snapshot are there (503 otherwise); the broker is reported
    description: >-
      200 with status "ok", or "degraded" when only the broker is down (reads and webhooks still
      work; follow-ups are not enqueued until it is back). 503 when the database is down or the
      default collection has no published snapshot.
    tags: [health]
    responses:
      200: {description: "ready; status ok or degraded, checks"}
      503: {description: "not ready, checks say why"}
    """
    checks: dict[str, str] = {"database": _database_check()}
    broker_error = _broker_check()
    # Its type alone, as the database's: the rest names the broker's host and port ("Error 111
    # connecting to redis:6379"), and /readyz is public.
    checks["broker"] = "ok" if broker_error is None else f"down: {answers.error_head(broker_error, people=False)}"
    if checks["database"] == "ok":
        checks["snapshot"] = _snapshot_check()
    failing = [name for name, value in checks.items() if not value.startswith("ok")]
    if all(checks.get(name, "").startswith("ok") for name in NEEDED):
        return JSONResponse({"ready": True, "status": "degraded" if failing else "ok", "checks": checks})
    said = "; ".join(f"{name} {checks[name]}" for name in failing)
    return JSONResponse({"ready": False, "checks": checks, "error": f"not ready: {said}", "status": 503},
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
    return JSONResponse(queue_reads.queue_status(people=is_operator(request)))
