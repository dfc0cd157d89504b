"""Small stored fixtures the tests of more than one module build: on SQLite or PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable

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
