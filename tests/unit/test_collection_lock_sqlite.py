"""storage.registry.lock_collection on SQLite (the embedded stack): two callers that read the
aliases and then move them take turns, as they do on PostgreSQL."""

from __future__ import annotations

import threading
import time

from sqlmodel import Session, SQLModel, create_engine

from storage import ingest as ingest_store
from storage.registry import PREVIOUS_CHAMPION, get_alias, lock_collection, remove_alias, set_alias
from storage.tables import Collection, ModelVersion
from tests.builders import items_and_models


def test_two_rollbacks_at_once_take_turns(tmp_path):
    """Both simultaneous rollbacks succeeded on SQLite (FOR UPDATE is ignored there, and pysqlite
    begins a transaction only at its first write): the second must see the first's change."""
    engine = create_engine(f"sqlite:///{tmp_path / 'lock.db'}", connect_args={"check_same_thread": False,
                                                                              "timeout": 30})
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        coll = ingest_store.ensure_collection(session, "cryptopunks")
        version_id = items_and_models(session, coll, ["1"])[0]
        set_alias(session, coll, PREVIOUS_CHAMPION, session.get(ModelVersion, version_id))
        session.commit()
        coll_id = coll.id
    rolled_back, start = [], threading.Barrier(2)

    def rollback() -> None:
        with Session(engine) as session:
            collection = session.get(Collection, coll_id)
            start.wait()
            lock_collection(session, collection)
            if get_alias(session, collection, PREVIOUS_CHAMPION) is not None:
                time.sleep(0.3)  # the other caller arrives while this one holds the lock
                remove_alias(session, collection, PREVIOUS_CHAMPION)
                rolled_back.append(threading.current_thread().name)
            session.commit()

    threads = [threading.Thread(target=rollback, name=f"caller-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(rolled_back) == 1, rolled_back
