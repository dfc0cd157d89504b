"""Small stored fixtures the tests of more than one module build: on SQLite or PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlmodel import Session, select

from storage.ingest import add_items
from storage.tables import Collection, ModelVersion


def items_and_models(session: Session, coll: Collection, keys: Iterable[str], versions: int = 1) -> list[int]:
    """Items `keys` in `coll` and `versions` registered model versions (no artifact behind them);
    the versions' ids, flushed."""
    add_items(session, coll, [{"item_key": key} for key in keys])
    made = [ModelVersion(collection_id=coll.id, version=v, estimator="test", artifact_uri=f"v{v}", sha256="0")
            for v in range(1, versions + 1)]
    session.add_all(made)
    session.flush()
    return [version.id for version in made]


def champion_and_another(client) -> tuple[int, int]:
    """The champion's version number and another's (one is trained when the session has only one).
    The champion is made past its probation (no previous champion), so that promoting the other
    makes it the one a rollback returns to (storage.registry.promote)."""
    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from storage.db import session_scope
    from storage.registry import PREVIOUS_CHAMPION, remove_alias

    with session_scope() as session:
        remove_alias(session, pipeline.collection(session, get_settings()), PREVIOUS_CHAMPION)
    models = client.get("/v1/models").json()
    if len(models["versions"]) < 2:
        pipeline.train(cutoff=datetime(2021, 6, 1, tzinfo=UTC))
        models = client.get("/v1/models").json()
    champion = models["aliases"]["champion"]
    # Not one the gates rejected or the monitor rolled back (another test's): promoting that is
    # refused without --force.
    from fairvalue.lifecycle import standing_rejection

    with session_scope() as session:
        coll = pipeline.collection(session, get_settings())
        judged = {v.version for v in session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id))
                  if standing_rejection(session, v) is not None}
    return champion, next(v["version"] for v in models["versions"] if v["version"] not in {champion, *judged})


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
        coll = pipeline.collection(session, get_settings())
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
