"""Several independent statements in one round trip (PostgreSQL pipeline mode).

Why: a webhook batch is bound by round trips, not by the database's work: on the 2-core bench
host each one costs 1-2 ms under load (bench/ingest.py), so the look-ups a batch needs (replay
check, collection, items, floors) go out together, with the transaction's BEGIN, and come back
together. Other dialects run the same statements one after another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exc as db_errors
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Session


def run_together(session: Session, statements: Sequence[tuple[TextClause, Mapping[str, Any]]]) -> list[list[tuple]]:
    """The rows of each statement (in the session's transaction), in order."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return [[tuple(row) for row in connection.execute(stmt, dict(params))] for stmt, params in statements]
    import psycopg

    compiled = [stmt.bindparams(**params).compile(dialect=connection.dialect,
                                                  compile_kwargs={"render_postcompile": True})
                for stmt, params in statements]
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():
            cursors = []
            for query in compiled:
                cursor = driver.cursor()
                cursor.execute(query.string, query.params)
                cursors.append(cursor)
        return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    except psycopg.Error as exc:  # as SQLAlchemy's own errors, so the API maps an outage to a 503
        raise db_errors.DBAPIError.instance("; ".join(q.string for q in compiled), None, exc, psycopg.Error) from exc
