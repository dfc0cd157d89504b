"""Small stored fixtures the tests of more than one module build: on SQLite or PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import Session

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
    return champion, next(v["version"] for v in models["versions"] if v["version"] != champion)
