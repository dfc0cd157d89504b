"""A task run still `running` long after any task may run is its dead worker's: the sweep marks
it abandoned (fairvalue/lifecycle/sweep.py abandon_stale_runs, storage/runs.py), on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

import storage.tables  # noqa: F401  (registers the tables)
from fairvalue import lifecycle
from fairvalue.lifecycle import sweep
from fairvalue.outcomes import monitor_line
from fairvalue.settings import Settings
from storage.tables import TaskRun, utcnow
from tests.builders import sessions_on


@pytest.fixture
def engine(memory_engine, monkeypatch):
    sessions_on(monkeypatch, sweep, memory_engine)
    return memory_engine


def _runs(engine, **started_ago_and_status):
    with Session(engine) as session:
        for name, (hours, status) in started_ago_and_status.items():
            session.add(TaskRun(task_name=name, status=status, started_at=utcnow() - timedelta(hours=hours),
                                detail={"request_id": 4} if status == "running" else {}))
        session.commit()


def _by_name(engine):
    with Session(engine) as session:
        return {r.task_name: r for r in session.exec(select(TaskRun)).all()}


def test_the_sweep_marks_runs_running_past_any_time_limit_abandoned(engine):
    settings = Settings(training_time_limit_seconds=2 * 3600, task_kill_grace_seconds=300)  # 2 h 5 min hard
    _runs(engine, killed=(3.2, "running"), training_now=(2.5, "running"), old_ok=(30, "ok"))
    abandoned = lifecycle.abandon_stale_runs(settings)
    runs = _by_name(engine)
    assert abandoned == [runs["killed"].id]
    killed = runs["killed"]
    assert killed.status == "abandoned" and killed.finished_at is not None
    assert killed.detail["request_id"] == 4 and "worker process died" in killed.detail["abandoned"]
    assert (runs["training_now"].status, runs["old_ok"].status) == ("running", "ok")
    assert lifecycle.abandon_stale_runs(settings) == []  # marked once
    assert monitor_line(killed.status, killed.detail).startswith("abandoned: still running 3.1 h after it started")


def test_a_run_within_the_longest_limit_of_any_task_is_not_abandoned(engine):
    """The sweep read training's limit alone: a nowcast allowed longer was marked abandoned while it ran."""
    settings = Settings(training_time_limit_seconds=3600, nowcast_time_limit_seconds=4 * 3600,
                        task_kill_grace_seconds=300)  # the nowcast's 4 h 5 min is the longest
    _runs(engine, long_nowcast=(3.0, "running"), killed=(5.2, "running"))
    assert lifecycle.abandon_stale_runs(settings) == [_by_name(engine)["killed"].id]
    assert _by_name(engine)["long_nowcast"].status == "running"
