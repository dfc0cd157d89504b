"""Bulk writes: PostgreSQL COPY through the session's own connection (same transaction), and
batched INSERTs on SQLite.

Why: a snapshot of 1M rows written as executemany INSERTs spends most of a nowcast in the
driver; COPY streams the rows in one statement and stays inside the caller's transaction,
so a snapshot is still written `building` and published by one pointer switch. The same holds
for ingest: the executemany INSERT was three quarters of ingesting 50,000 sales, half of that in
psycopg splitting the generated SQL (bench/ingest.py), so large batches are staged by COPY instead,
and new sales are COPYed straight into their table (copy_unless_conflict).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy import types as sa_types
from sqlmodel import Session, SQLModel

BATCH = 5000


def copy_rows(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
    json_columns: Sequence[str] = (),
) -> int:
    """Append `rows` (tuples in `columns` order) to `table`; return how many were written.
    No conflict handling: callers write rows nobody else can hold (a new snapshot, a new
    collection)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return _insert_batches(session, table, columns, rows)
    from psycopg.types.json import Jsonb

    json_at = [i for i, c in enumerate(columns) if c in json_columns]
    cursor = connection.connection.driver_connection.cursor()
    written = 0
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            if json_at:
                row = list(row)
                for i in json_at:
                    row[i] = Jsonb(row[i])
            copy.write_row(row)
            written += 1
    return written


def _insert_batches(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    target = SQLModel.metadata.tables[table]
    written, batch = 0, []
    for row in rows:
        batch.append(dict(zip(columns, row, strict=True)))
        if len(batch) >= BATCH:
            session.execute(insert(target), batch)
            written, batch = written + len(batch), []
    if batch:
        session.execute(insert(target), batch)
        written += len(batch)
    return written


def copy_csv(session: Session, table: str, columns: Sequence[str], text: str) -> int:
    """Append the rows of CSV `text` (no header; empty field = NULL; times ISO with zone) to
    `table`. One COPY on PostgreSQL; typed batched INSERTs on SQLite."""
    if not text:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = connection.connection.driver_connection.cursor()
        with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN WITH (FORMAT csv)') as copy:
            copy.write(text)
        return cursor.rowcount
    target = SQLModel.metadata.tables[table]
    parse = [_parser(target.c[c].type) for c in columns]
    rows = (tuple(p(v) for p, v in zip(parse, fields, strict=True)) for fields in csv.reader(io.StringIO(text)))
    return _insert_batches(session, table, columns, rows)


def _parser(column_type: sa_types.TypeEngine):
    """Text → the column's Python value. Decided by the SQLAlchemy type, not python_type: SQLModel's
    AutoString and some DateTime columns report `object` there."""
    if isinstance(column_type, sa_types.TypeDecorator):  # e.g. SQLModel's UTCDateTime over DateTime
        column_type = column_type.impl
    if isinstance(column_type, sa_types.DateTime):
        convert = datetime.fromisoformat
    elif isinstance(column_type, sa_types.Float | sa_types.Numeric):
        convert = float
    elif isinstance(column_type, sa_types.Integer):
        convert = int
    else:
        convert = str

    def parse(value: str):
        return None if value == "" else convert(value)

    return parse


def copy_unless_conflict(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """PostgreSQL only: COPY `rows` straight into `table`, in a savepoint of the caller's
    transaction; False, with nothing written, when one of them hits a unique constraint. For
    rows the caller has just found not stored: the INSERT … ON CONFLICT from a staging table
    (copy_insert_ignoring_conflicts) inserts row by row and took as long again as this COPY,
    which writes them in bulk (bench/ingest.py); binary, which psycopg encodes and PostgreSQL
    parses faster than text (times and floats). A row a concurrent writer stored since the
    caller looked makes this fail (after that writer commits), and the caller goes the safe way."""
    from psycopg import errors, sql

    columns = list(rows[0])
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    cursor = session.connection().connection.driver_connection.cursor()
    # Binary COPY needs the columns' types: read from the table itself (a query of no rows).
    cursor.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, sql.Identifier(table.name)))
    types = [column.type_code for column in cursor.description]
    cursor.execute("SAVEPOINT copy_unless_conflict")
    try:
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
                         .format(sql.Identifier(table.name), names)) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row([row[c] for c in columns])
    except errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT copy_unless_conflict")
        return False
    cursor.execute("RELEASE SAVEPOINT copy_unless_conflict")
    return True


def copy_insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], returning: str | None = None
) -> list[Any]:
    """PostgreSQL only: COPY `rows` into a temporary table shaped like their columns, then one
    INSERT … SELECT … ON CONFLICT DO NOTHING into `table`, in the caller's transaction. Same
    result as the executemany INSERT (rows that hit a unique constraint are skipped, the
    `returning` column of the inserted ones comes back), at COPY speed."""
    from psycopg import sql
    from psycopg.types.json import Jsonb

    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON)}
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    target, stage = sql.Identifier(table.name), sql.Identifier(f"stage_{table.name}")
    cursor = session.connection().connection.driver_connection.cursor()
    # Columns only, no constraints or defaults: the table's own constraints decide at INSERT.
    cursor.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA")
                   .format(stage, names, target))
    cursor.execute(sql.SQL("TRUNCATE {}").format(stage))
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_columns else row[c] for c in columns])
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(target, names, names, stage)
    if returning is not None:
        insert = sql.SQL("{} RETURNING {}").format(insert, sql.Identifier(returning))
    cursor.execute(insert)
    inserted = [r[0] for r in cursor.fetchall()] if returning is not None else []
    cursor.execute(sql.SQL("TRUNCATE {}").format(stage))
    return inserted
