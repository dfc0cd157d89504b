"""Alembic environment: the URL comes from the caller (storage.migrate) or the settings."""

from alembic import context
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from fairvalue.settings import get_settings
from storage.db import engine_for

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url()
    engine = engine_for(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration on SQLite rebuilds a table (copy, drop the old, rename), and dropping
            # one other tables' rows refer to fails while foreign keys are enforced (a downgrade of a
            # database holding snapshots did). Off for the migration (the pragma is a no-op inside a
            # transaction, so before it), checked after it, and on again for the pooled connection.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            dangling_before = _dangling(connection)
            connection.commit()  # the statements began SQLAlchemy's transaction; alembic's must be its own
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                _refuse_new_dangling(connection, dangling_before)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _dangling(connection) -> set[tuple]:
    """SQLite's rows whose foreign keys point nowhere: (table, rowid, parent table, key index)."""
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}


def _refuse_new_dangling(connection, before: set[tuple]) -> None:
    """Fail loudly when the migration left rows pointing nowhere. SQLite's DDL is not transactional
    here (alembic commits each revision), so what ran stays: the message says so. Rows that pointed
    nowhere before (a hand edit with foreign keys off) are not the migration's, and do not block it."""
    left = sorted(_dangling(connection) - before)
    if left:
        raise RuntimeError(f"the migration, which stays applied, left {len(left)} row(s) whose foreign keys point "
                           f"nowhere (table, rowid, parent, key): {left[:5]}")

run_migrations_online()
