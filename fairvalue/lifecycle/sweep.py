"""The sweep (hourly) and publishing: fail the requests whose last attempt died, list the ones to
publish again, abandon the task runs of dead workers; mark a request published once sent."""

from __future__ import annotations

import logging
from datetime import timedelta

from fairvalue.settings import Settings, get_settings
from storage import requests, runs
from storage.db import session_scope
from storage.tables import utcnow

log = logging.getLogger(__name__)


def requests_to_republish(settings: Settings | None = None) -> list[int]:
    """The sweep's list; first fails the requests that used up their attempts by dying."""
    settings = settings or get_settings()
    with session_scope() as session:
        failed = requests.fail_abandoned(session, settings.training_max_attempts)
        if failed:
            log.warning("training requests %s failed: lease expired on their last attempt", failed)
        return requests.to_republish(session, timedelta(minutes=settings.sweep_stale_minutes))


# A run still `running` this long after the longest a task may run (the largest hard time limit,
# training's by default) is its dead process's: the margin covers a slow start and recording its end.
ABANDON_MARGIN = timedelta(hours=1)


def abandon_stale_runs(settings: Settings | None = None) -> list[int]:
    """Mark abandoned the task runs whose process died under them (a killed worker never records
    the end of its run, and retention keeps every run still running): the ids marked."""
    settings = settings or get_settings()
    longest = timedelta(seconds=settings.longest_task_seconds())
    reason = (f"still running {(longest + ABANDON_MARGIN).total_seconds() / 3600:.1f} h after it started, past the "
              "longest any task may run (the largest hard time limit and an hour): its worker process died")
    with session_scope() as session:
        abandoned = runs.abandon_stale(session, utcnow() - longest - ABANDON_MARGIN, reason)
    if abandoned:
        log.warning("task runs %s abandoned: their worker died under them", abandoned)
    return abandoned


def mark_published(request_id: int) -> None:
    with session_scope() as session:
        requests.mark_published(session, request_id)


def mark_unpublished(request_id: int) -> None:
    """Forget a publication whose message was not sent (a request no longer waiting is left alone)."""
    with session_scope() as session:
        requests.mark_unpublished(session, request_id)
