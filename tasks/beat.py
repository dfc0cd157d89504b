"""A beat scheduler that refuses to run twice.

Two beats would emit every periodic task twice. The tasks are safe to overlap, but the
design wants one clock: on PostgreSQL the scheduler holds a session-level advisory lock for
its whole life, and a second beat exits with a clear message. The lock lives on one
connection, and a connection that drops (a database restart, a network cut) releases it: so
every FAIRVALUE_BEAT_LOCK_CHECK_SECONDS the scheduler checks it still holds it, takes it again
on a new connection if it is free, and exits if another beat took it meanwhile. (The embedded
SQLite default runs on one machine with one `fairvalue up`.)
"""

from __future__ import annotations

import logging
import time

from celery.beat import PersistentScheduler
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fairvalue.settings import get_settings
from storage.db import get_engine

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


class SingletonScheduler(PersistentScheduler):
    def setup_schedule(self):
        self._locking = get_engine().dialect.name == "postgresql"
        self._lock_connection = _take_lock() if self._locking else None
        self._next_lock_check = time.monotonic() + get_settings().beat_lock_check_seconds
        super().setup_schedule()

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
