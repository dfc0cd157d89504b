"""The model registry: versions with artifact + sha256 + lineage, and aliases.

An alias (champion, contender, previous_champion) is one row keyed by (collection, alias);
promoting or rolling back is one update of that row.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from enum import Enum
from threading import Lock
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, select

from models.estimator import FairValueModel
from storage.artifacts import ArtifactStore
from storage.decisions import forget_due_rollback
from storage.tables import Collection, ModelAlias, ModelVersion, utcnow
from storage.upsert import upsert

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CONTENDER = "contender"  # a contender in shadow: valued beside the champion, not served


class Lineage(Enum):
    """register_version's parent when its caller names none."""

    CHAMPION_NOW = "the champion as the version is registered"


def lock_collection(session: Session, collection: Collection) -> None:
    """Lock the collection row until the transaction ends: what numbers a new version, and what
    reads the aliases and then moves them (the gates' promotion, the monitor, operators'
    promotions and rollbacks), takes it first, or two at once would each act on what the other
    is about to change (PostgreSQL; SQLite has one writer anyway). FOR NO KEY UPDATE, not FOR
    UPDATE: the latter also conflicts with the key-share lock every insert that references the
    collection takes (a sale, a snapshot), so ingest and nowcasts would wait out a model upload.

    SQLite ignores FOR UPDATE, and pysqlite begins a transaction only at its first write, so two
    callers both read the aliases before either wrote (two simultaneous rollbacks both succeeded
    on the embedded stack). A write that changes nothing takes SQLite's one write lock now: the
    second caller waits here (the connection's busy timeout) and then reads what the first wrote."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Collection).where(Collection.id == collection.id).values(id=collection.id))
        return
    session.exec(select(Collection).where(Collection.id == collection.id).with_for_update(key_share=True)).one()


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
    parent_id: int | None | Lineage = Lineage.CHAMPION_NOW,
) -> ModelVersion:
    """Store the artifact (content-addressed) and record the version with its lineage: `parent_id`,
    the model it was measured against (a gated contender: the champion the gates compared it with,
    which may have been replaced while it trained), else the champion now (`fairvalue train`)."""
    lock_collection(session, collection)  # two training workers cannot take the same version number
    next_version = (
        session.exec(
            select(func.max(ModelVersion.version)).where(ModelVersion.collection_id == collection.id)
        ).one()
        or 0
    ) + 1
    stored = store.put(f"models/{collection.slug}/v{next_version}.joblib", model.to_bytes())
    if parent_id is Lineage.CHAMPION_NOW:
        parent = get_alias(session, collection, CHAMPION)
        parent_id = parent.id if parent else None
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
        parent_id=parent_id,
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


def promote(session: Session, collection: Collection, version: ModelVersion,
            probation_days: float | None = None) -> None:
    """Make `version` the champion, remembering the one it replaces for rollback. A contender
    promoted (by an operator) leaves the shadow: else the monitor would judge it against itself,
    and a rollback would leave it waiting there to be promoted again.

    A champion replaced while on probation (its previous champion set within `probation_days`)
    has not proven itself live: the previous champion stays the one to roll back to, and is set
    again, so the new champion's probation against it starts now. Promoting that previous
    champion itself is a return to it, and the champion on probation becomes the previous one."""
    current = get_alias(session, collection, CHAMPION)
    if current is not None and current.id != version.id:
        # A rollback of `current` the monitor kept due is moot: whoever promoted chose the champion
        # after it (one promoted back later is a choice made after the judgement, not under it).
        forget_due_rollback(session, collection)
        previous = get_alias(session, collection, PREVIOUS_CHAMPION)
        since = alias_since(session, collection, PREVIOUS_CHAMPION)
        on_probation = (probation_days is not None and previous is not None and since is not None
                        and previous.id != version.id and utcnow() - since <= timedelta(days=probation_days))
        set_alias(session, collection, PREVIOUS_CHAMPION, previous if on_probation else current)
    set_alias(session, collection, CHAMPION, version)
    contender = get_alias(session, collection, CONTENDER)
    if contender is not None and contender.id == version.id:
        remove_alias(session, collection, CONTENDER)


def remove_alias(session: Session, collection: Collection, alias: str) -> None:
    from sqlalchemy import delete

    session.execute(delete(ModelAlias.__table__).where(ModelAlias.collection_id == collection.id,
                                                       ModelAlias.alias == alias))


def alias_since(session: Session, collection: Collection, alias: str):
    row = session.get(ModelAlias, (collection.id, alias))
    return row.updated_at if row else None


_VERIFIED: OrderedDict[tuple[str, str], FairValueModel] = OrderedDict()
_VERIFIED_LOCK = Lock()
_VERIFIED_MAX = 4


def load_model(store: ArtifactStore, version: ModelVersion):
    """Fetch and verify (sha256) before unpickling: joblib must never load unchecked bytes.
    The estimator name says which model class the artifact must hold.

    A worker keeps the last few verified models in memory (keyed by uri and sha256, so a new
    version is never confused with an old one): an artifact store outage then does not stop
    nowcasts with a model this process already verified."""
    key = (version.artifact_uri, version.sha256)
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            _VERIFIED.move_to_end(key)
            return _VERIFIED[key]
    data = store.get(version.artifact_uri, version.sha256)
    if version.estimator.startswith("daily-"):
        from models.daily import DailyFairValueModel

        model = DailyFairValueModel.from_bytes(data)
    else:
        model = FairValueModel.from_bytes(data)
    with _VERIFIED_LOCK:
        _VERIFIED[key] = model
        while len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    return model


def verify_artifact(store: ArtifactStore, version: ModelVersion) -> None:
    """Read the artifact back and check its sha256 (raises IntegrityError / ArtifactError)."""
    store.get(version.artifact_uri, version.sha256)


def version_numbers(session: Session, ids) -> dict[int, int]:
    """The version number of each model version id among `ids` (None ignored), in one query."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(session.exec(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(ids))).all())
