"""Engine and sessions. One engine per database URL per process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from fairvalue.settings import get_settings


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # WAL lets the API read while a worker writes a snapshot.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # pre_ping: after a database restart, a dead pooled connection is replaced instead of failing a
    # request; connect_timeout: an unreachable server fails fast (readiness answers 503 in time).
    pool_size = get_settings().database_pool_size
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                         connect_args={"connect_timeout": 5})


def get_engine() -> Engine:
    return engine_for(get_settings().resolved_database_url())


def consistent_reads(engine: Engine | None = None) -> Engine:
    """The engine, with PostgreSQL transactions at REPEATABLE READ: every statement of one reads
    the same snapshot, so a read of several statements (a nowcast's market) is of one moment, the
    one storage.market.current_snapshot names. Other databases get the engine as it is."""
    engine = engine or get_engine()
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ")


def database_now(engine: Engine | None = None) -> datetime:
    """The time by the database's clock, the one every worker and API process shares (PostgreSQL);
    elsewhere (SQLite, one machine) this process's."""
    engine = engine or get_engine()
    if engine.dialect.name != "postgresql":
        return datetime.now(UTC)
    with engine.connect() as connection:
        return connection.execute(text("SELECT clock_timestamp()")).scalar_one()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def why_unreachable(engine: Engine | None = None) -> str | None:
    """None when the database answers, else why not in one line (for a process that cannot work
    without it to say so and exit, rather than start and fail every task)."""
    engine = engine or get_engine()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        return one_line(exc)
    return None


def one_line(exc: BaseException) -> str:
    """A database error in one line: the driver's first line, without SQLAlchemy's SQL and links."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]
