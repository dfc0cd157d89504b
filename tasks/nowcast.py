"""Nowcast task: value every item with the champion and publish the snapshot; and the retry of
archives a store outage left out."""

from __future__ import annotations

from datetime import datetime

from fairvalue import pipeline
from fairvalue.lifecycle import NOWCAST_LOOP, is_paused
from fairvalue.settings import get_settings
from storage.runs import FAILED, SKIPPED, recorded_run
from tasks import names
from tasks.app import app
from tasks.guards import skipped_unless_loaded

# Read once, as the worker imports its tasks: Celery takes a task's time limits from its decorator.
_limits = get_settings()


@app.task(name=names.NOWCAST, bind=True, soft_time_limit=_limits.nowcast_time_limit_seconds,
          time_limit=_limits.hard_time_limit(_limits.nowcast_time_limit_seconds))
def nowcast(self, as_of: str | None = None, collection: str | None = None, requested_at: str | None = None) -> dict:
    """`requested_at`: when an out-of-cycle nowcast was asked for (tasks.app.request_nowcast);
    skipped when the published snapshot was read after it. Beat's nowcasts carry none."""
    settings = get_settings().for_collection(collection)
    with recorded_run(names.NOWCAST, self.request.id, settings.collection) as run:
        if is_paused(NOWCAST_LOOP):
            run.update(status=SKIPPED, reason="paused")
            return dict(run)
        if skipped_unless_loaded(run, settings):
            return dict(run)
        served_by = requested_at and pipeline.published_read_since(settings, datetime.fromisoformat(requested_at))
        if served_by:
            run.update(status=SKIPPED, reason=f"snapshot {served_by}, read after the request, is published")
            return dict(run)
        try:
            result = pipeline.nowcast(settings, as_of=datetime.fromisoformat(as_of) if as_of else None)
        except pipeline.NoChampion as exc:
            # Loaded but not trained yet (cards whose prices came first): nothing to value with until
            # `fairvalue train`, which is a setup step to take, not a failure every half hour.
            run.update(status=SKIPPED, reason=str(exc))
            return dict(run)
        run.update(result.__dict__)
        if result.archive_error is None:
            # The store answers again: archive what an earlier outage left out (usually nothing),
            # on the nowcast's short budget too (the hourly archive task is the patient one).
            run["late_archives"] = pipeline.archive_pending(settings, limit=5, short_budget=True).archived
        return result.__dict__


@app.task(name=names.ARCHIVE, bind=True)
def archive(self, collection: str | None = None) -> dict:
    settings = get_settings().for_collection(collection)
    with recorded_run(names.ARCHIVE, self.request.id, settings.collection) as run:
        if skipped_unless_loaded(run, settings):
            return dict(run)
        report = pipeline.archive_pending(settings)
        run.update(archived=report.archived, failed=report.failed, pending=report.pending)
        # Retention thins a published snapshot only once it is archived, so it runs whatever the store
        # said: the rest (shadows, never-published snapshots, replaced listings) needs no store.
        run["retention"] = pipeline.apply_retention(settings).as_dict()
        if report.failed:
            run["status"] = FAILED
        return dict(run)
