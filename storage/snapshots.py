"""Nowcast snapshots and the pointer that publishes them.

A snapshot's rows are written and committed while its status is `building`; nobody reads
them then, because readers only follow the published pointer. Publishing is one transaction
that flips the status and moves the pointer, so a reader sees the old snapshot or the new
one, never a mix. Rows of a snapshot never change after it is built.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import insert, update
from sqlmodel import Session, select

from storage.tables import Collection, NowcastRow, NowcastSnapshot, PublishedSnapshot, utcnow

ROW_COLUMNS = ("item_key", "fair_value", "p10", "p90", "signal", "last_price", "last_sale_at")


def _none_if_nan(value):
    return None if value is None or pd.isna(value) else value


def write_snapshot(
    session: Session,
    collection: Collection,
    model_version_id: int,
    as_of: datetime,
    data_cutoff: datetime | None,
    values: pd.DataFrame,
) -> NowcastSnapshot:
    """Write a complete, unpublished snapshot (the caller commits)."""
    snapshot = NowcastSnapshot(
        collection_id=collection.id,
        model_version_id=model_version_id,
        as_of=as_of,
        data_cutoff=data_cutoff,
        n_items=len(values),
        status="building",
    )
    session.add(snapshot)
    session.flush()
    last_sale = pd.to_datetime(values["last_sale_at"]).dt.tz_localize("UTC")
    rows = [
        {
            "snapshot_id": snapshot.id,
            "item_key": key,
            "fair_value": float(fair),
            "p10": _none_if_nan(p10),
            "p90": _none_if_nan(p90),
            "signal": signal,
            "last_price": _none_if_nan(last_price),
            "last_sale_at": None if pd.isna(ts) else ts.to_pydatetime(),
        }
        for key, fair, p10, p90, signal, last_price, ts in zip(
            values["item_key"], values["fair_value"], values["p10"], values["p90"],
            values["signal"], values["last_price"], last_sale, strict=True,
        )
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(NowcastRow.__table__), rows[start : start + 5000])
    return snapshot


def publish(session: Session, collection: Collection, snapshot: NowcastSnapshot) -> bool:
    """Point readers at `snapshot` unless a snapshot of a later moment is already published
    (overlapping nowcast runs must not move the pointer backwards). Returns whether it moved."""
    current = session.exec(
        select(PublishedSnapshot).where(PublishedSnapshot.collection_id == collection.id).with_for_update()
    ).first()
    now = utcnow()
    if current is not None:
        current_snapshot = session.get(NowcastSnapshot, current.snapshot_id)
        if current_snapshot is not None and current_snapshot.as_of > snapshot.as_of:
            session.execute(
                update(NowcastSnapshot.__table__)
                .where(NowcastSnapshot.id == snapshot.id)
                .values(status="superseded")
            )
            return False
        current.snapshot_id = snapshot.id
        current.published_at = now
        session.add(current)
    else:
        session.add(PublishedSnapshot(collection_id=collection.id, snapshot_id=snapshot.id, published_at=now))
    session.execute(
        update(NowcastSnapshot.__table__)
        .where(NowcastSnapshot.id == snapshot.id)
        .values(status="published", published_at=now)
    )
    return True


@dataclass(frozen=True)
class PublishedValue:
    snapshot_id: int
    as_of: datetime
    published_at: datetime
    model_version_id: int
    item_key: str
    fair_value: float
    p10: float | None
    p90: float | None
    signal: str
    last_price: float | None
    last_sale_at: datetime | None


def read_published(
    session: Session, collection: Collection, item_keys: list[str] | None = None
) -> list[PublishedValue]:
    """Values of the published snapshot, read in ONE statement so a concurrent publish can
    never give a mix of two snapshots."""
    stmt = (
        select(
            NowcastSnapshot.id, NowcastSnapshot.as_of, NowcastSnapshot.published_at,
            NowcastSnapshot.model_version_id, NowcastRow.item_key, NowcastRow.fair_value,
            NowcastRow.p10, NowcastRow.p90, NowcastRow.signal, NowcastRow.last_price,
            NowcastRow.last_sale_at,
        )
        .select_from(PublishedSnapshot)
        .join(NowcastSnapshot, NowcastSnapshot.id == PublishedSnapshot.snapshot_id)
        .join(NowcastRow, NowcastRow.snapshot_id == NowcastSnapshot.id)
        .where(PublishedSnapshot.collection_id == collection.id)
    )
    if item_keys is not None:
        stmt = stmt.where(NowcastRow.item_key.in_(item_keys))
    return [PublishedValue(*row) for row in session.exec(stmt).all()]


def published_snapshot(session: Session, collection: Collection) -> NowcastSnapshot | None:
    return session.exec(
        select(NowcastSnapshot)
        .join(PublishedSnapshot, PublishedSnapshot.snapshot_id == NowcastSnapshot.id)
        .where(PublishedSnapshot.collection_id == collection.id)
    ).first()


def unarchived_snapshots(session: Session, collection: Collection) -> list[int]:
    """Published snapshots whose archive is missing (the store was down), newest first."""
    return list(session.exec(
        select(NowcastSnapshot.id).where(NowcastSnapshot.collection_id == collection.id,
                                         NowcastSnapshot.status == "published",
                                         NowcastSnapshot.archive_uri.is_(None))
        .order_by(NowcastSnapshot.id.desc())
    ).all())


def snapshot_values(session: Session, snapshot_id: int) -> pd.DataFrame:
    """A stored snapshot's rows in the form the nowcast produced them (naive UTC times)."""
    rows = session.exec(
        select(*(getattr(NowcastRow, c) for c in ROW_COLUMNS)).where(NowcastRow.snapshot_id == snapshot_id)
        .order_by(NowcastRow.item_key)
    ).all()
    values = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    values["last_sale_at"] = pd.to_datetime(values["last_sale_at"], utc=True).dt.tz_localize(None)
    return values


def snapshot_csv_gz(values: pd.DataFrame) -> bytes:
    """The archive form of a snapshot: gzip'd CSV, deterministic (mtime 0) so equal
    snapshots have equal sha256."""
    text = values[list(ROW_COLUMNS)].to_csv(index=False, float_format="%.6g")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(text.encode())
    return buf.getvalue()
