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
            connection.commit()  # the statement began SQLAlchemy's transaction; alembic's must be its own
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
                    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if dangling:
                        raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {dangling[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


run_migrations_online()
