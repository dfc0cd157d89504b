"""INSERT … ON CONFLICT for both dialects we run on (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.bulk import copy_insert_ignoring_conflicts

# From this many rows on, PostgreSQL inserts go through COPY (storage/bulk.py says why).
COPY_FROM_ROWS = 100


def _insert_for(session: Session, table: Table):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for dialect {dialect}")


def insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], returning: str | None = None
) -> list[Any]:
    """Insert rows, skipping those that hit a unique constraint; return the `returning` column
    of the rows actually inserted (so callers can tell new rows from duplicates)."""
    if not rows:
        return []
    if len(rows) >= COPY_FROM_ROWS and session.get_bind().dialect.name == "postgresql":
        return copy_insert_ignoring_conflicts(session, table, rows, returning)
    stmt = _insert_for(session, table).on_conflict_do_nothing()
    if returning is None:
        session.execute(stmt, list(rows))
        return []
    result = session.execute(stmt.returning(table.c[returning]), list(rows))
    return [r[0] for r in result.all()]


def upsert(session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert rows or overwrite the non-key columns of the existing ones."""
    if not rows:
        return
    stmt = _insert_for(session, table)
    update_cols = [c for c in rows[0] if c not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_cols}
    )
    session.execute(stmt, list(rows))
