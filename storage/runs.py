"""Task runs: every task records when it ran, how it ended and what it did."""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from storage.db import session_scope
from storage.tables import TaskRun, utcnow

# How a run ends. `abandoned`: still `running` long after any task could run, so its process died
# under it (a killed worker never records its end); the sweep marks it (abandon_stale).
RUNNING, OK, FAILED, SKIPPED, ABANDONED = "running", "ok", "failed", "skipped", "abandoned"
STATUSES = (RUNNING, OK, FAILED, SKIPPED, ABANDONED)


@contextmanager
def recorded_run(task_name: str, task_id: str | None = None,
                 collection: str | None = None) -> Iterator[dict[str, Any]]:
    """Record a run; the body fills the yielded dict with what it did. `collection`: the one the
    run is for, when the task knows it as it starts, so a running run shows it (the queue page,
    GET /v1/queue); the body's detail["collection"] replaces it when the run ends."""
    with session_scope() as session:
        run = TaskRun(task_name=task_name, task_id=task_id, status=RUNNING, collection=collection)
        session.add(run)
        session.flush()
        run_id = run.id
    detail: dict[str, Any] = {"collection": collection} if collection else {}
    status = OK
    try:
        yield detail
    except BaseException as exc:
        status = FAILED
        detail["error"] = f"{type(exc).__name__}: {exc}"
        detail["traceback"] = traceback.format_exc(limit=5)[-4000:]
        raise
    finally:
        with session_scope() as session:
            run = session.get(TaskRun, run_id)
            run.status = detail.pop("status", status) if status == OK else status
            run.finished_at = utcnow()
            run.detail = _jsonable(detail)
            collection = detail.get("collection")
            run.collection = collection if isinstance(collection, str) else None
            session.add(run)


def _jsonable(value: Any) -> Any:
    """JSON-safe: numpy scalars become numbers, NaN and infinities None, anything else unknown text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def latest_run_ids():
    """The id of the latest run of each task and collection (a select): what last_runs reads and
    what retention keeps whatever its age."""
    return select(func.max(TaskRun.id)).group_by(TaskRun.task_name, TaskRun.collection)


def last_runs(session: Session) -> dict[tuple[str, str | None], TaskRun]:
    """The latest run of each task for each collection: (task name, collection) -> run. A
    collection's skipped run does not hide another's."""
    runs = session.exec(select(TaskRun).where(TaskRun.id.in_(latest_run_ids()))).all()
    return {(r.task_name, r.collection): r for r in runs}


def last_ok_starts(session: Session) -> dict[tuple[str, str | None], datetime]:
    """When the latest successful run of each task for each collection started: (task name,
    collection) -> started_at (what a restarting beat counts as done: tasks.beat.runs_done)."""
    rows = session.exec(select(TaskRun.task_name, TaskRun.collection, func.max(TaskRun.started_at))
                        .where(TaskRun.status == OK).group_by(TaskRun.task_name, TaskRun.collection)).all()
    return {(name, coll): started for name, coll, started in rows}


def abandon_stale(session: Session, started_before: datetime, reason: str) -> list[int]:
    """Mark the runs still running that started before `started_before` abandoned, with `reason`
    in their detail; their ids. A run that does end after all records its end over this."""
    stale = session.exec(select(TaskRun).where(TaskRun.status == RUNNING, TaskRun.started_at < started_before)
                         .order_by(TaskRun.id)).all()
    now = utcnow()
    for run in stale:
        run.status, run.finished_at = ABANDONED, now
        run.detail = {**(run.detail or {}), "abandoned": reason}
        session.add(run)
    return [run.id for run in stale]
