"""Small stored fixtures the tests of more than one module build: on SQLite or PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from storage.ingest import add_items
from storage.tables import Collection, ModelVersion

if TYPE_CHECKING:
    import pandas as pd


def items_and_models(session: Session, coll: Collection, keys: Iterable[str], versions: int = 1) -> list[int]:
    """Items `keys` in `coll` and `versions` registered model versions (no artifact behind them);
    the versions' ids, flushed."""
    add_items(session, coll, [{"item_key": key} for key in keys])
    made = [ModelVersion(collection_id=coll.id, version=v, estimator="test", artifact_uri=f"v{v}", sha256="0")
            for v in range(1, versions + 1)]
    session.add_all(made)
    session.flush()
    return [version.id for version in made]


def champion_and_another() -> tuple[int, int]:
    """The champion's version number and another's that may be promoted without --force: the
    newest not rejected by the gates or rolled back by the monitor, and whose artifact verifies
    (another test's may be either); one is trained when the session has none. The champion is
    made past its probation (no previous champion), so that promoting the other makes it the one
    a rollback returns to (storage.registry.promote)."""
    from fairvalue import pipeline
    from fairvalue.lifecycle import standing_rejection
    from fairvalue.settings import get_settings
    from storage.artifacts import ArtifactError, get_store
    from storage.db import session_scope
    from storage.registry import CHAMPION, PREVIOUS_CHAMPION, get_alias, remove_alias, verify_artifact

    def sound(version: ModelVersion) -> bool:
        try:
            verify_artifact(get_store(), version)
        except ArtifactError:
            return False
        return True

    def candidates() -> tuple[int, list[int]]:
        with session_scope() as session:
            coll = pipeline.ensure_collection_of(session, get_settings())
            remove_alias(session, coll, PREVIOUS_CHAMPION)
            champion = get_alias(session, coll, CHAMPION)
            versions = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id)
                                    .order_by(ModelVersion.version.desc())).all()
            return champion.version, [v.version for v in versions if v.id != champion.id
                                      and standing_rejection(session, v) is None and sound(v)]

    champion, others = candidates()
    if not others:
        pipeline.train(cutoff=datetime(2021, 6, 1, tzinfo=UTC))
        champion, others = candidates()
    return champion, others[0]


@contextmanager
def rejected_by_gates(version: int, reason: str) -> Iterator[int]:
    """A gates' reject decision on `version` of the settings' collection, as a training run records
    it; removed afterwards so later tests may promote the version. Yields the decision's id."""
    from sqlalchemy import delete

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from storage.db import session_scope
    from storage.tables import PromotionDecision

    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, get_settings())
        target = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                         ModelVersion.version == version)).one()
        decision = PromotionDecision(collection_id=coll.id, contender_version_id=target.id, decision="reject",
                                     decided_by="gates", reason=reason, numbers={})
        session.add(decision)
        session.flush()
        decision_id = decision.id
    try:
        yield decision_id
    finally:
        with session_scope() as session:
            session.execute(delete(PromotionDecision.__table__).where(PromotionDecision.id == decision_id))


def sessions_on(monkeypatch, module, engine) -> None:
    """`module`'s session_scope opens its sessions on `engine` (a unit test's memory_engine)."""
    from storage import db

    monkeypatch.setattr(module, "session_scope", lambda: db.session_scope(engine))


def published_snapshot(slug: str, values: pd.DataFrame) -> int:
    """A published snapshot of `values` (a nowcast's rows, one per item) as of 30 days ago, in the
    collection `slug` with its items and one model version made for it (use a collection of the
    test's own: it becomes the published one); its id. Not archived."""
    from storage.db import session_scope
    from storage.ingest import ensure_collection
    from storage.snapshots import publish, write_snapshot
    from storage.tables import utcnow

    with session_scope() as session:
        coll = ensure_collection(session, slug)
        (version,) = items_and_models(session, coll, list(values["item_key"]))
        snap = write_snapshot(session, coll, version, utcnow() - timedelta(days=30), None, values)
        publish(session, coll, snap)
        return snap.id


def thin_as_retention_does(snapshot_id: int) -> None:
    """What retention leaves of a snapshot no sale met (storage/retention.py): none of its rows,
    and the moment they went stated on it."""
    from sqlalchemy import delete, update

    from storage.db import session_scope
    from storage.tables import NowcastRow, NowcastSnapshot, utcnow

    with session_scope() as session:
        session.execute(delete(NowcastRow).where(NowcastRow.snapshot_id == snapshot_id))
        session.execute(update(NowcastSnapshot).where(NowcastSnapshot.id == snapshot_id)
                        .values(rows_thinned_at=utcnow()))


@contextmanager
def pointer_on(snapshot_id: int) -> Iterator[None]:
    """`snapshot_id` pointed at as its collection's published snapshot, whatever its moment
    (publish() never moves the pointer back to an earlier one), and the pointer put back as it
    was afterwards. Moved behind publish()'s back, so the snapshot the API holds in this process
    (fairvalue.item_reads.PUBLISHED) is dropped both times: reads here see each move at once."""
    from fairvalue.item_reads import PUBLISHED
    from storage.db import session_scope
    from storage.tables import NowcastSnapshot, PublishedSnapshot

    with session_scope() as session:
        snapshot = session.get(NowcastSnapshot, snapshot_id)
        pointer = session.get(PublishedSnapshot, snapshot.collection_id)
        collection_id, before = snapshot.collection_id, (pointer.snapshot_id, pointer.published_at)
        pointer.snapshot_id, pointer.published_at = snapshot_id, snapshot.published_at or pointer.published_at
        session.add(pointer)
    PUBLISHED.invalidate()
    try:
        yield
    finally:
        with session_scope() as session:
            pointer = session.get(PublishedSnapshot, collection_id)
            pointer.snapshot_id, pointer.published_at = before
            session.add(pointer)
        PUBLISHED.invalidate()
