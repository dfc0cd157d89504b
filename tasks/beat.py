"""A beat scheduler that refuses to run twice.

Two beats would emit every periodic task twice. The tasks are safe to overlap, but the
design wants one clock: on PostgreSQL the scheduler holds a session-level advisory lock for
its whole life, and a second beat exits with a clear message. The lock lives on one
connection, and a connection that drops (a database restart, a network cut) releases it: so
every FAIRVALUE_BEAT_LOCK_CHECK_SECONDS the scheduler checks it still holds it, takes it again
on a new connection if it is free, and exits if another beat took it meanwhile. (The embedded
SQLite default runs on one machine with one `fairvalue up`.)

A restarted beat catches up every entry whose slot passed while it was down. A run it did not
send counts too (`fairvalue up`'s startup nowcast, an operator's run): each entry's last run is
the later of the schedule file's and the start of the latest successful run recorded in
task_runs, so beat catches up what was not done rather than what was (credit_runs_done). The
nowcast's is the moment the published snapshot values instead (runs_done): a nowcast run today
of a past moment serves nothing fresher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from celery.beat import PersistentScheduler, ScheduleEntry
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fairvalue.settings import get_settings
from storage.db import get_engine, one_line, session_scope
from storage.runs import last_ok_starts
from storage.snapshots import published_as_of
from tasks import names
from tasks.app import DatabaseUnreachable

log = logging.getLogger("fairvalue.beat")
BEAT_LOCK_KEY = 0x66766274  # "fvbt": one number all beats of a deployment agree on
# A bigint advisory lock below 2**32 shows in pg_locks as classid 0, objid the key, objsubid 1.
HOLDS_LOCK = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
                  "AND objid = :k AND objsubid = 1 AND pid = pg_backend_pid() AND granted)")


class AnotherBeatIsRunning(SystemExit):
    pass


def _take_lock():
    """A connection holding the beat lock; AnotherBeatIsRunning when another beat holds it."""
    conn = get_engine().connect()
    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": BEAT_LOCK_KEY}).scalar()
    conn.commit()
    if not got:
        conn.close()
        raise AnotherBeatIsRunning("another celery beat holds the fairvalue beat lock; exactly one may run")
    return conn  # the lock lives as long as this connection


def runs_done(session) -> dict[tuple[str, str | None], datetime]:
    """(task name, collection) -> when it was last done, for credit_runs_done: each task's latest
    successful run (storage.runs.last_ok_starts), but the nowcast's is the as_of of the snapshot
    readers are served. `fairvalue nowcast --as-of <last week>` is a successful run of today that
    publishes nothing fresher (or nothing at all), and a beat restarted after it must still send
    the half-hourly nowcast when its slot has passed."""
    done = {key: started for key, started in last_ok_starts(session).items() if key[0] != names.NOWCAST}
    done.update({(names.NOWCAST, slug): as_of for slug, as_of in published_as_of(session).items()})
    return done


# The tasks whose one run does every collection's work, and so records its run without one
# (tasks/lifecycle.py's sweep): beat's entry for them is looked up under None, not under the
# default collection, under which no run of theirs is ever recorded.
RUNS_FOR_EVERY_COLLECTION = frozenset({names.SWEEP})


def credit_runs_done(entries: Iterable[ScheduleEntry], done: Mapping[tuple[str, str | None], datetime],
                     default_collection: str) -> list[str]:
    """Move each entry's last run up to when its task was last done for the entry's collection (its
    `collection` kwarg, else the default one; None for a task in RUNS_FOR_EVERY_COLLECTION) when
    that is later; the names of the entries moved. `done`: runs_done's (task name, collection) -> when."""
    credited = []
    for entry in entries:
        collection = None if entry.task in RUNS_FOR_EVERY_COLLECTION \
            else (entry.kwargs or {}).get("collection", default_collection)
        started = done.get((entry.task, collection))
        if started is None:
            continue
        started = _utc(started)
        if entry.last_run_at is None or _utc(entry.last_run_at) < started:
            entry.last_run_at = started
            credited.append(entry.name)
    return credited


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class SingletonScheduler(PersistentScheduler):
    def setup_schedule(self):
        self._locking = get_engine().dialect.name == "postgresql"
        self._lock_connection = self._take_first_lock() if self._locking else None
        self._next_lock_check = time.monotonic() + get_settings().beat_lock_check_seconds
        super().setup_schedule()
        self._count_runs_done_elsewhere()

    @staticmethod
    def _take_first_lock():
        """The lock, or this beat stops with one line: without its database a beat cannot know
        whether another runs (later, at a lock check, it keeps running and tries again)."""
        try:
            return _take_lock()
        except DBAPIError as exc:
            raise DatabaseUnreachable(f"celery beat: the database cannot be reached to take the beat lock "
                                      f"({one_line(exc)}); not starting") from None

    def _count_runs_done_elsewhere(self) -> None:
        try:
            with session_scope() as session:
                done = runs_done(session)
        except DBAPIError as exc:  # the schedule file alone, as a plain beat would
            log.warning("the task runs cannot be read (%s); catching up by the schedule file alone",
                        type(exc).__name__)
            return
        credited = credit_runs_done(self.schedule.values(), done, get_settings().collection)
        if credited:
            log.info("counted as run by their recorded runs: %s", ", ".join(credited))
            self.sync()

    def tick(self, *args, **kwargs):
        if self._locking and time.monotonic() >= self._next_lock_check:
            self._keep_lock()
            self._next_lock_check = time.monotonic() + get_settings().beat_lock_check_seconds
        return super().tick(*args, **kwargs)

    def _keep_lock(self) -> None:
        """Still the one beat: the lock held, or taken again after its connection dropped. A
        database it cannot reach is tried again at the next check (beat keeps its schedule; no
        second beat can take the lock either)."""
        held = False
        if self._lock_connection is not None:
            try:
                held = self._lock_connection.execute(HOLDS_LOCK, {"k": BEAT_LOCK_KEY}).scalar()
                self._lock_connection.commit()
            except DBAPIError:  # the connection is gone, and the lock with it
                held = False
        if held:
            return
        log.warning("the beat lock was released (its database connection dropped); taking it again")
        if self._lock_connection is not None:
            try:
                self._lock_connection.close()
            except DBAPIError:
                pass
            self._lock_connection = None
        try:
            self._lock_connection = _take_lock()
        except DBAPIError as exc:
            log.warning("the database cannot be reached to take the beat lock again (%s); trying at the next "
                        "check", type(exc).__name__)
        except AnotherBeatIsRunning:  # it stops this beat (celery ends on SystemExit without a word)
            log.error("another beat took the beat lock while this one's connection was down: this beat stops")
            raise

    def close(self):
        super().close()
        if getattr(self, "_lock_connection", None) is not None:
            self._lock_connection.close()
