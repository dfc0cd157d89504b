"""The local artifact store is full, or read-only: the error says so plainly, nothing half
written is left behind, and the work is retried once there is room.

As root the store is a tiny tmpfs (then remounted read-only, then given room); otherwise a
file-size limit on the process stands in for the full disk and a read-only directory works as is."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlmodel import select

from storage.artifacts import LocalStore
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.snapshots import published_snapshot
from storage.tables import NowcastRow, NowcastSnapshot, utcnow
from tests.realparts import ROOT

pytestmark = pytest.mark.integration
ROOT_USER = os.geteuid() == 0


@contextmanager
def tiny_store(path: Path):
    """A directory that holds almost nothing: a 32 KiB tmpfs as root, else a plain directory
    (the child process gets a file-size limit instead, see fairvalue_archive)."""
    path.mkdir()
    if ROOT_USER:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k,mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if ROOT_USER:
            subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    if ROOT_USER:  # root ignores permission bits; a read-only mount stops it too
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    else:
        path.chmod(0o555)


def roomy(path: Path) -> None:
    if ROOT_USER:
        subprocess.run(["mount", "-o", "remount,rw,size=16m", str(path)], check=True)
    else:
        path.chmod(0o755)


def fairvalue_archive(store: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit():  # pragma: no cover - runs in the child
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "fairvalue.cli", "archive", "--limit", "1"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, preexec_fn=limit, env={**os.environ, "FAIRVALUE_ARTIFACTS_URL": str(store),
                                                        "COLUMNS": "200"},
    )


def unarchived_copy_of_the_published_snapshot() -> int:
    """A published snapshot without an archive, as a store outage leaves one (a copy of the
    served one, so the pointer and what readers see do not change)."""
    with session_scope() as session:
        coll = ensure_collection(session, "cryptopunks")
        served = published_snapshot(session, coll)
        copy = NowcastSnapshot(collection_id=coll.id, model_version_id=served.model_version_id,
                               as_of=served.as_of, data_cutoff=served.data_cutoff, n_items=served.n_items,
                               status="published", published_at=utcnow())
        session.add(copy)
        session.flush()
        rows = session.exec(select(NowcastRow).where(NowcastRow.snapshot_id == served.id)).all()
        session.execute(insert(NowcastRow.__table__), [
            {**r.model_dump(), "snapshot_id": copy.id} for r in rows])
        return copy.id


def archive_of(snapshot_id: int) -> NowcastSnapshot:
    with session_scope() as session:
        return session.get(NowcastSnapshot, snapshot_id)


def test_full_then_read_only_local_store(seeded, tmp_path):
    """Afterwards: `fairvalue archive` failed with exit code 1 and the plain cause (no space /
    read-only), no temporary or partial file was left in the store, the snapshot stayed
    published without an archive; with room again the same command archived it, and the bytes
    read back match the recorded sha256."""
    snapshot_id = unarchived_copy_of_the_published_snapshot()
    with tiny_store(tmp_path / "store") as store:
        full = fairvalue_archive(store, limit_bytes=None if ROOT_USER else 32 * 1024)
        assert full.returncode == 1, full.stdout + full.stderr
        assert f"snapshot {snapshot_id}: not archived" in full.stderr  # the CLI's errors go to stderr
        assert ("No space left on device" if ROOT_USER else "File too large") in full.stderr
        assert "Traceback" not in full.stdout + full.stderr
        assert [p for p in store.rglob("*") if p.is_file()] == []  # no .tmp- leftovers, no partial object

        read_only(store)
        denied = fairvalue_archive(store)
        assert denied.returncode == 1
        assert ("Read-only file system" if ROOT_USER else "Permission denied") in denied.stderr
        assert archive_of(snapshot_id).archive_uri is None

        roomy(store)
        done = fairvalue_archive(store)
        assert done.returncode == 0, done.stdout + done.stderr
        snap = archive_of(snapshot_id)
        assert snap.status == "published" and snap.archive_uri.startswith("file://")
        data = LocalStore(store).get(snap.archive_uri, snap.archive_sha256)
        assert len(data) > 32 * 1024  # it could not have fit before
