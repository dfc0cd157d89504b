"""The sweep (hourly) and publishing: fail the requests whose last attempt died, list the ones to
publish (again, and those still in a retry's backoff with no message: the sweep's list and a
resume's), abandon the task runs of dead workers; mark a request published once sent."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from fairvalue.settings import Settings, get_settings
from storage import requests, runs
from storage.db import session_scope
from storage.tables import utcnow

log = logging.getLogger(__name__)


def requests_to_republish(settings: Settings | None = None, now: datetime | None = None) -> list[int]:
    """The requests whose message is due now; first fails the requests that used up their attempts by dying."""
    settings = settings or get_settings()
    with session_scope() as session:
        failed = requests.fail_abandoned(session, settings.training_max_attempts)
        if failed:
            log.warning("training requests %s failed: lease expired on their last attempt", failed)
        return requests.to_republish(session, timedelta(minutes=settings.sweep_stale_minutes), now)


def requests_to_publish(settings: Settings | None = None,
                        now: datetime | None = None) -> list[tuple[int, float | None]]:
    """What the sweep and a resume of the training loop publish, each with its message's countdown in
    seconds: those whose message is due now (requests_to_republish) at once (None), then the requests
    still in a retry's backoff that have no message, each with what is left of its backoff, so it is
    claimed as the backoff ends (left until then, it waited for the first sweep after, up to an hour).
    Each is marked published as it is sent, so the next sweep inside the backoff leaves it alone.
    Both read at one `now`: a backoff that ends between two reads would put its request in neither
    list, or in both."""
    now = now or utcnow()
    at_once = requests_to_republish(settings, now)
    with session_scope() as session:
        in_backoff = requests.unpublished_in_backoff(session, now)
    return [(request_id, None) for request_id in at_once] + \
        [(request_id, requests.backoff_left(not_before, now)) for request_id, not_before in in_backoff]


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
