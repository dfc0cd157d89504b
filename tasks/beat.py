"""A beat scheduler that refuses to run twice.

Two beats would emit every periodic task twice. The tasks are safe to overlap, but the
design wants one clock: on PostgreSQL the scheduler holds a session-level advisory lock for
its whole life, and a second beat exits with a clear message. (The embedded SQLite default
runs on one machine with one `fairvalue up`.)
"""

from __future__ import annotations

from celery.beat import PersistentScheduler
from sqlalchemy import text

from storage.db import get_engine

BEAT_LOCK_KEY = 0x66766274  # "fvbt": one number all beats of a deployment agree on


class AnotherBeatIsRunning(SystemExit):
    pass


class SingletonScheduler(PersistentScheduler):
    def setup_schedule(self):
        self._lock_connection = None
        engine = get_engine()
        if engine.dialect.name == "postgresql":
            conn = engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": BEAT_LOCK_KEY}).scalar()
            conn.commit()
            if not got:
                conn.close()
                raise AnotherBeatIsRunning("another celery beat holds the fairvalue beat lock; exactly one may run")
            self._lock_connection = conn  # the lock lives as long as this connection
        super().setup_schedule()

    def close(self):
        super().close()
        if getattr(self, "_lock_connection", None) is not None:
            self._lock_connection.close()
