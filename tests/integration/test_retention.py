"""Retention on PostgreSQL: the scenarios of tests/unit/test_retention.py (there on SQLite), each
in a collection of its own, the pruning of old webhook deliveries and task runs, and the archive
task's run reporting what it thinned."""

from __future__ import annotations

import pytest

from storage.db import session_scope
from storage.ingest import ensure_collection
from tests.builders import items_and_models
from tests.unit.test_retention import (
    a_dropped_listing_sent_again_changes_nothing,
    dropping_replaced_listings_keeps_the_asks,
    pruning_audit_records_keeps_the_last_runs,
    thinning_keeps_what_is_scored,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("slug, scenario", [("retention-snapshots", thinning_keeps_what_is_scored),
                                            ("retention-listings", dropping_replaced_listings_keeps_the_asks),
                                            ("retention-resent", a_dropped_listing_sent_again_changes_nothing)])
def test_retention_on_postgresql(database, slug, scenario):
    with session_scope() as session:
        scenario(session, ensure_collection(session, slug))


def test_old_deliveries_and_task_runs_are_pruned_on_postgresql(database):
    """At the clock's now: every other test's deliveries and runs are recent and stay, and what
    this leaves (recent deliveries, each task's last run, a running one) is never due later."""
    from storage.tables import utcnow

    with session_scope() as session:
        pruning_audit_records_keeps_the_last_runs(session, ensure_collection(session, "retention-audit"), utcnow())


def test_the_hourly_archive_task_thins_what_is_past_the_window(worker):
    """Through the broker and a real worker: the archive run records what retention thinned."""
    from datetime import timedelta

    from sqlmodel import select

    from storage.tables import NowcastRow, TaskRun, utcnow
    from tasks.app import app as celery_app
    from tests.integration.conftest import wait_for
    from tests.unit.test_retention import ITEMS, _snapshot

    slug = "retention-task"
    with session_scope() as session:
        coll = ensure_collection(session, slug)
        (version,) = items_and_models(session, coll, ITEMS)
        month_ago = (utcnow() - timedelta(days=30)).replace(hour=10, minute=0)  # both on one day
        thinned = _snapshot(session, coll, version, "published", month_ago)
        _snapshot(session, coll, version, "published", month_ago + timedelta(minutes=30))  # the day's last
        _snapshot(session, coll, version, "published", utcnow() - timedelta(hours=1))  # published now
    task_id = celery_app.send_task("fairvalue.archive", kwargs={"collection": slug}).id

    def finished() -> dict | None:
        with session_scope() as session:
            run = session.exec(select(TaskRun).where(TaskRun.task_id == task_id, TaskRun.status != "running")).first()
            return None if run is None else {"status": run.status, **run.detail}

    run = wait_for(finished, timeout=120)
    assert run["status"] == "ok" and run["retention"] == {
        "snapshots_thinned": 1, "rows_deleted": len(ITEMS), "listing_events_deleted": 0,
        "webhook_deliveries_deleted": 0, "task_runs_deleted": 0, "dropped_listings_forgotten": 0}, run
    with session_scope() as session:
        assert session.exec(select(NowcastRow).where(NowcastRow.snapshot_id == thinned)).first() is None
