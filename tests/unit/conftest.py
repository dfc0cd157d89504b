"""Fixtures of the unit tests that run on an in-memory SQLite database (the embedded setup)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

import storage.tables  # noqa: F401  (registers the tables)
from storage import ingest as ingest_store


@pytest.fixture
def sqlite_market():
    """(session, collection): punks "1" and "2" and a floor of 100 on 2024-01-01, committed."""
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        coll = ingest_store.ensure_collection(session, "cryptopunks")
        ingest_store.add_items(session, coll, [{"item_key": "1"}, {"item_key": "2"}])
        ingest_store.put_market_days(session, coll, {date(2024, 1, 1): {"floor": 100.0, "eth_usd": None}})
        session.commit()
        yield session, coll


@pytest.fixture
def memory_engine():
    """An in-memory SQLite database with every table, one connection shared by a test's threads
    (a heartbeat's, a task's)."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    return engine
