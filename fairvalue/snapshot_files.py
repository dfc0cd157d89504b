"""A whole published snapshot as one file: its archive, gzip'd CSV of every item's fair value,
band, signal, last sale, ask, and the price its signal read with its deviation (storage.snapshots.ROW_COLUMNS;
storage.snapshots.row_columns: a snapshot from before migration 0019 has no such two).

The archive in the artifact store is the file, read back against its recorded sha256. While a
store outage keeps a snapshot unarchived (`fairvalue archive` retries it), the file is rebuilt
from its rows, which are whole until it is archived: retention thins archived snapshots only
(storage/retention.py), so one past the window is served whole from its archive. A rebuilt
file is the archive's to the byte (storage.snapshots.snapshot_values keeps the nowcast's item
order), but only the archive's digest is final: a rebuilt one is not cached as immutable, and
an archive the store cannot give back is rebuilt only when the rebuild has its recorded digest.
Otherwise the read is fairvalue.errors.Lost (the archive gone or not its bytes: an operator must
restore it) or Unavailable (the store does not answer now: retry later), as unread_artifact says.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from fairvalue.answers import iso, page_bounds, snapshot_reference
from fairvalue.errors import BadInput, NotFound, NotReady, unread_artifact
from fairvalue.reads import collection_row
from fairvalue.settings import get_settings
from storage import snapshots
from storage.artifacts import ArtifactError, get_store, sha256_hex
from storage.db import session_scope
from storage.snapshots import published_snapshot, rebuilt_archive
from storage.tables import ModelVersion, NowcastSnapshot

log = logging.getLogger("fairvalue.reads")

PUBLISHED = "published"
SNAPSHOT_ID = re.compile(r"[0-9]{1,10}")
MAX_ID = 2**31 - 1  # nowcast_snapshots.id is an INTEGER: a larger id is refused, not sent to the database


@dataclass(frozen=True)
class SnapshotFile:
    collection: str
    snapshot_id: int
    published_at: datetime
    sha256: str  # of the body; known before the body is read when the snapshot is archived
    archived: bool  # the digest is the archive's, which never changes
    read_body: Callable[[], bytes]
    size: int | None = None  # the body's length when it is known without reading it (a rebuilt one is in hand)

    @property
    def filename(self) -> str:
        return f"{self.collection}-snapshot-{self.snapshot_id}.csv.gz"


def snapshot_file(slug: str, ref: str) -> SnapshotFile:
    """The file of snapshot `ref` ("published", or the id of a snapshot the collection published);
    its body is read only when asked for, so an unchanged file, or a HEAD, is answered without it."""
    if ref != PUBLISHED and not (SNAPSHOT_ID.fullmatch(ref) and 0 < int(ref) <= MAX_ID):
        raise BadInput(f"snapshot must be {PUBLISHED!r} or a snapshot id, got {ref[:40]!r}")
    with session_scope() as session:
        coll = collection_row(session, slug)
        snap = published_snapshot(session, coll) if ref == PUBLISHED else session.get(NowcastSnapshot, int(ref))
        if snap is None and ref == PUBLISHED:
            raise NotReady(f"no snapshot of {coll.slug} is published yet")
        if snap is None or snap.collection_id != coll.id or snap.status != snapshots.PUBLISHED:
            raise NotFound(f"no published snapshot {ref} in {coll.slug}")  # a shadow or superseded one is no file
        snapshot_id, published_at, uri, digest = snap.id, snap.published_at, snap.archive_uri, snap.archive_sha256
        rebuilt = None if uri else rebuilt_archive(session, snapshot_id)
    if rebuilt is not None:
        return SnapshotFile(coll.slug, snapshot_id, published_at, sha256_hex(rebuilt), False, lambda: rebuilt,
                            len(rebuilt))

    def from_archive() -> bytes:
        try:
            # The short budget: an HTTP request must not hang on S3 for minutes, and the rows rebuild it.
            return get_store(get_settings(), short_budget=True).get(uri, digest)
        except ArtifactError as exc:
            with session_scope() as session:
                body = rebuilt_archive(session, snapshot_id)
            what, where = f"the archive of snapshot {snapshot_id}", f"snapshot file of {coll.slug}"
            if sha256_hex(body) != digest:  # thinned by retention, or archived in another item order
                raise unread_artifact(exc, what, where) from None
            log.warning("%s: %s could not be read, served rebuilt from its rows: %s", where, what, exc)
            return body

    return SnapshotFile(coll.slug, snapshot_id, published_at, digest, True, from_archive)


def published_snapshots(slug: str, limit: int = 50, offset: int = 0) -> dict:
    """The snapshots a collection published, newest first: what each file
    (`/v1/collections/{slug}/snapshots/{id}`) holds, whether it is archived, and whether
    retention thinned its rows in the database (its file is then the archive's)."""
    limit, offset = page_bounds(limit, offset)
    with session_scope() as session:
        coll = collection_row(session, slug)
        published = (NowcastSnapshot.collection_id == coll.id) & (NowcastSnapshot.status == snapshots.PUBLISHED)
        rows = session.exec(select(NowcastSnapshot, ModelVersion.version).outerjoin(
            ModelVersion, ModelVersion.id == NowcastSnapshot.model_version_id).where(published).order_by(
            NowcastSnapshot.published_at.desc(), NowcastSnapshot.id.desc()).offset(offset).limit(limit)).all()
        total = session.exec(select(func.count()).select_from(NowcastSnapshot).where(published)).one()
        current = published_snapshot(session, coll)
    return {"collection": coll.slug, "total": total, "offset": offset, "limit": limit,
            "next_offset": offset + limit if offset + limit < total else None,
            "snapshots": [{**snapshot_reference(snap.id, snap.as_of, snap.valued_at, snap.published_at),
                           "model_version": version, "n_items": snap.n_items,
                           "current": current is not None and snap.id == current.id,
                           "archived": snap.archive_uri is not None, "thinned_at": iso(snap.rows_thinned_at),
                           "file": f"/v1/collections/{coll.slug}/snapshots/{snap.id}"} for snap, version in rows]}
