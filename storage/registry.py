"""The model registry: versions with artifact + sha256 + lineage, and aliases.

An alias (champion, contender, previous_champion) is one row keyed by (collection, alias);
promoting or rolling back is one update of that row.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from models.estimator import FairValueModel
from storage.artifacts import ArtifactStore
from storage.tables import Collection, ModelAlias, ModelVersion, utcnow
from storage.upsert import upsert

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CONTENDER = "contender"  # a contender in shadow: valued beside the champion, not served


def register_version(
    session: Session,
    store: ArtifactStore,
    collection: Collection,
    model: FairValueModel,
    metrics: dict[str, Any],
    data_start,
    data_end,
    n_train: int,
    code_version: str,
) -> ModelVersion:
    """Store the artifact (content-addressed) and record the version with its lineage."""
    # Lock the collection row so two training workers cannot take the same version number.
    session.exec(select(Collection).where(Collection.id == collection.id).with_for_update()).one()
    next_version = (
        session.exec(
            select(func.max(ModelVersion.version)).where(ModelVersion.collection_id == collection.id)
        ).one()
        or 0
    ) + 1
    stored = store.put(f"models/{collection.slug}/v{next_version}.joblib", model.to_bytes())
    parent = get_alias(session, collection, CHAMPION)
    version = ModelVersion(
        collection_id=collection.id,
        version=next_version,
        estimator=model.name,
        artifact_uri=stored.uri,
        sha256=stored.sha256,
        params=model.params,
        metrics=metrics,
        data_start=data_start,
        data_end=data_end,
        n_train=n_train,
        code_version=code_version,
        parent_id=parent.id if parent else None,
    )
    session.add(version)
    session.flush()
    return version


def get_alias(session: Session, collection: Collection, alias: str) -> ModelVersion | None:
    return session.exec(
        select(ModelVersion)
        .join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
        .where(ModelAlias.collection_id == collection.id, ModelAlias.alias == alias)
    ).first()


def set_alias(session: Session, collection: Collection, alias: str, version: ModelVersion) -> None:
    upsert(
        session,
        ModelAlias.__table__,
        [{"collection_id": collection.id, "alias": alias, "model_version_id": version.id,
          "updated_at": utcnow()}],
        keys=("collection_id", "alias"),
    )


def promote(session: Session, collection: Collection, version: ModelVersion) -> None:
    """Make `version` the champion, remembering the one it replaces for rollback."""
    current = get_alias(session, collection, CHAMPION)
    if current is not None and current.id != version.id:
        set_alias(session, collection, PREVIOUS_CHAMPION, current)
    set_alias(session, collection, CHAMPION, version)


def remove_alias(session: Session, collection: Collection, alias: str) -> None:
    from sqlalchemy import delete

    session.execute(delete(ModelAlias.__table__).where(ModelAlias.collection_id == collection.id,
                                                       ModelAlias.alias == alias))


def alias_since(session: Session, collection: Collection, alias: str):
    row = session.get(ModelAlias, (collection.id, alias))
    return row.updated_at if row else None


# Models already loaded in this process, by the sha256 their bytes were verified against.
# Artifacts are content-addressed, so a digest names one model for good; unpickling the
# champion on every nowcast cost more than predicting 10,000 items (bench/nowcast.py).
_LOADED: OrderedDict[str, FairValueModel] = OrderedDict()
_LOADED_MAX = 4


def load_model(store: ArtifactStore, version: ModelVersion) -> FairValueModel:
    """Fetch and verify (sha256) before unpickling: joblib must never load unchecked bytes."""
    model = _LOADED.get(version.sha256)
    if model is None:
        model = FairValueModel.from_bytes(store.get(version.artifact_uri, version.sha256))
        _LOADED[version.sha256] = model
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(version.sha256)
    return model
