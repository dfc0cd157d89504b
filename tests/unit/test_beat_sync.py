"""Beat writes its schedule file after every task it sends: a beat killed with -9 right after
sending must not send it again when it restarts (celery syncs every 3 minutes by default)."""

from __future__ import annotations

import time

from celery.beat import ScheduleEntry
from celery.schedules import crontab

from tasks.app import app
from tasks.beat import SingletonScheduler


def test_the_schedule_is_written_after_each_task_sent(tmp_path, monkeypatch):
    scheduler = SingletonScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    sent, synced = [], []
    monkeypatch.setattr(scheduler, "send_task", lambda *a, **k: sent.append(a))
    monkeypatch.setattr(scheduler, "_do_sync", lambda: synced.append(len(sent)))
    scheduler._last_sync = time.monotonic()  # synced a moment ago: the 3-minute clock is not due
    entry = ScheduleEntry(name="cards-prices-daily", task="fairvalue.not-registered-here", schedule=crontab(),
                          app=app)
    scheduler.apply_async(entry, advance=False)
    scheduler.apply_async(entry, advance=False)
    assert synced == [1, 2]
