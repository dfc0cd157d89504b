"""A restarted beat counts a run it did not send (`fairvalue up`'s startup nowcast) as done, so it
does not send the same task again at once (tasks.beat.credit_runs_done), and a nowcast of a past
moment is not such a run (tasks.beat.runs_done)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab

from tasks.beat import credit_runs_done, runs_done

APP = Celery("beat-credit", set_as_current=False)
NOW = datetime.now(UTC)
# A daily slot half a day from now: due for a last run days ago, never for one a minute ago.
SLOT = crontab(minute=0, hour=(NOW.hour + 12) % 24, app=APP)


def entry(name: str, last_run: datetime | None, kwargs: dict | None = None) -> ScheduleEntry:
    return ScheduleEntry(name=name, task="fairvalue.nowcast", schedule=SLOT, kwargs=kwargs or {},
                         last_run_at=last_run, app=APP)


def test_a_recorded_run_after_the_schedule_file_s_last_run_is_counted_as_done():
    stale = entry("nowcast", NOW - timedelta(days=3))
    assert stale.is_due().is_due  # a beat restarted after three days would send it at once
    just_now = (NOW - timedelta(minutes=1)).replace(tzinfo=None)  # SQLite gives naive UTC
    assert credit_runs_done([stale], {("fairvalue.nowcast", "cryptopunks"): just_now}, "cryptopunks") == ["nowcast"]
    assert stale.last_run_at == just_now.replace(tzinfo=UTC)
    assert not stale.is_due().is_due


def test_only_a_later_run_of_the_same_task_and_collection_counts():
    recent = entry("nowcast", NOW - timedelta(minutes=5))
    cards = entry("cards-nowcast", NOW - timedelta(days=3), {"collection": "cards"})
    done = {("fairvalue.nowcast", "cryptopunks"): NOW - timedelta(hours=1),  # older than the file's
            ("fairvalue.policy", "cards"): NOW}  # another task
    assert credit_runs_done([recent, cards], done, "cryptopunks") == []
    assert recent.last_run_at == NOW - timedelta(minutes=5) and cards.is_due().is_due
    assert credit_runs_done([cards], {("fairvalue.nowcast", "cards"): NOW}, "cryptopunks") == ["cards-nowcast"]


def test_a_nowcast_of_a_past_moment_does_not_stand_in_for_the_half_hourly_one(memory_engine):
    """`fairvalue nowcast --as-of <last week>` run a minute ago is a successful nowcast run, but the
    values served are still the published snapshot's, two hours old: the entry stays due."""
    from sqlmodel import Session

    from storage import ingest
    from storage.snapshots import PUBLISHED, SUPERSEDED
    from storage.tables import NowcastSnapshot, PublishedSnapshot, TaskRun

    with Session(memory_engine) as session:
        coll = ingest.ensure_collection(session, "cryptopunks")
        served = NowcastSnapshot(collection_id=coll.id, model_version_id=1, as_of=NOW - timedelta(hours=2),
                                 status=PUBLISHED)
        past = NowcastSnapshot(collection_id=coll.id, model_version_id=1, as_of=NOW - timedelta(days=7),
                               status=SUPERSEDED)
        session.add_all([served, past])
        session.flush()
        session.add(PublishedSnapshot(collection_id=coll.id, snapshot_id=served.id))
        session.add_all([TaskRun(task_name="fairvalue.nowcast", collection="cryptopunks", status="ok",
                                 started_at=NOW - timedelta(minutes=1), detail={"snapshot_id": 2}),
                         TaskRun(task_name="fairvalue.policy", collection="cryptopunks", status="ok",
                                 started_at=NOW - timedelta(minutes=3))])
        session.commit()
        done = runs_done(session)  # SQLite gives naive UTC
    assert done[("fairvalue.nowcast", "cryptopunks")].replace(tzinfo=UTC) == NOW - timedelta(hours=2)
    assert done[("fairvalue.policy", "cryptopunks")].replace(tzinfo=UTC) == NOW - timedelta(minutes=3)  # their runs

    half_hourly = ScheduleEntry(name="nowcast", task="fairvalue.nowcast", schedule=timedelta(minutes=30),
                                last_run_at=NOW - timedelta(hours=2), app=APP)
    assert credit_runs_done([half_hourly], done, "cryptopunks") == []
    assert half_hourly.is_due().is_due


def test_a_sweep_run_recorded_for_every_collection_is_credited_to_the_sweep_entry(memory_engine):
    """The sweep records its runs without a collection (one run republishes every collection's
    requests); its entry used to be looked up under the default collection, so a sweep just run (a
    training worker's start sweep, `celery call fairvalue.training.sweep`) was never credited."""
    from sqlmodel import Session

    from storage.tables import TaskRun
    from tasks import names

    with Session(memory_engine) as session:
        session.add(TaskRun(task_name=names.SWEEP, collection=None, status="ok", started_at=NOW - timedelta(minutes=1)))
        session.commit()
        done = runs_done(session)
    sweep = ScheduleEntry(name="training-sweep-hourly", task=names.SWEEP, schedule=SLOT,
                          last_run_at=NOW - timedelta(days=3), app=APP)  # as beat_schedule's entry: no kwargs
    assert sweep.is_due().is_due
    assert credit_runs_done([sweep], done, "cryptopunks") == ["training-sweep-hourly"]
    assert sweep.last_run_at == NOW - timedelta(minutes=1)
    assert not sweep.is_due().is_due
