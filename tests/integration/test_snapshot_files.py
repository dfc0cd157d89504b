"""GET /v1/collections/{slug}/snapshots/{snapshot}: a whole published snapshot as its archive
file, against PostgreSQL and the moto S3 store: the published one and a numbered one, the digest
as ETag and 304, refusals, and a snapshot thinned by retention served whole from its archive."""

from __future__ import annotations

import csv
import gzip
import io

import pandas as pd
import pytest
from sqlalchemy import update
from sqlmodel import select

from storage.artifacts import sha256_hex
from storage.db import session_scope
from storage.snapshots import ROW_COLUMNS, rebuilt_archive
from storage.tables import NowcastRow, NowcastSnapshot

pytestmark = pytest.mark.integration


def rows_of(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(body).decode())))


def test_the_published_snapshot_is_one_file_named_by_its_archive_digest(client):
    published = client.get("/v1/collections/cryptopunks/snapshots/published")

    assert published.status_code == 200 and published.headers["content-type"] == "application/gzip"
    snapshot_id = int(published.headers["x-snapshot-id"])
    rows = rows_of(published.content)
    with session_scope() as session:
        snap = session.get(NowcastSnapshot, snapshot_id)
        stored = dict(session.exec(select(NowcastRow.item_key, NowcastRow.fair_value)
                                   .where(NowcastRow.snapshot_id == snapshot_id)).all())
        rebuilt = rebuilt_archive(session, snapshot_id)
    assert published.headers["etag"] == f'"{snap.archive_sha256}"' and snap.status == "published"
    assert sha256_hex(rebuilt) == snap.archive_sha256  # the nowcast's archive, to the byte (its item order)
    assert list(rows[0]) == list(ROW_COLUMNS) and len(rows) == snap.n_items == 10_000
    assert {r["item_key"]: float(r["fair_value"]) for r in rows} == stored
    assert published.headers["cache-control"] == "no-cache"
    assert f"cryptopunks-snapshot-{snapshot_id}.csv.gz" in published.headers["content-disposition"]

    numbered = client.get(f"/v1/collections/cryptopunks/snapshots/{snapshot_id}")
    unchanged = client.get(f"/v1/collections/cryptopunks/snapshots/{snapshot_id}",
                           headers={"If-None-Match": published.headers["etag"]})
    assert numbered.content == published.content and "immutable" in numbered.headers["cache-control"]
    assert unchanged.status_code == 304 and unchanged.content == b""


def test_a_head_answers_the_headers_without_reading_the_archive(client, monkeypatch):
    """A HEAD read the whole archive from the store (and the server dropped it) to answer headers
    the snapshot's record holds: its digest (the ETag), its id and its file name. Its length is not
    recorded, so an archived file's HEAD has no Content-Length rather than a read for it."""
    from fairvalue import snapshot_files

    path = "/v1/collections/cryptopunks/snapshots/published"
    got = client.get(path)
    store, asked = snapshot_files.get_store, []
    monkeypatch.setattr(snapshot_files, "get_store", lambda *a, **k: asked.append(a) or store(*a, **k))
    head = client.head(path)

    assert head.status_code == 200 and asked == [] and head.content == b""
    for name in ("etag", "x-snapshot-id", "content-disposition", "cache-control", "content-type"):
        assert head.headers[name] == got.headers[name], name
    assert "content-length" not in head.headers
    unchanged = client.head(path, headers={"If-None-Match": got.headers["etag"]})
    assert unchanged.status_code == 304 and asked == []


@pytest.mark.parametrize("snapshot, status", [("999999999", 404), ("2147483647", 404), ("2147483648", 400),
                                              ("latest", 400), ("-1", 400), ("0", 400)])
def test_a_snapshot_that_is_no_published_one_is_refused_with_why(client, snapshot, status):
    answer = client.get(f"/v1/collections/cryptopunks/snapshots/{snapshot}")
    assert answer.status_code == status and answer.json()["error"], answer.text
    assert client.get("/v1/collections/no-such-market/snapshots/published").status_code == 404


def test_a_snapshot_thinned_by_retention_is_served_whole_from_its_archive(client):
    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from tests.builders import published_snapshot, thin_as_retention_does

    slug = "export-test"
    values = pd.DataFrame({"item_key": ["a", "b", "c"], "fair_value": [10.5, 20.25, 30.0], "p10": [9.0, 18.0, 27.0],
                           "p90": [12.0, 23.0, 33.0], "signal": ["HOLD", "BUY", "HOLD"],
                           "last_price": [10.0, None, 31.0],
                           "last_sale_at": pd.to_datetime(["2024-01-01T10:00:00", None, "2024-01-02T11:00:00"])})
    snapshot_id = published_snapshot(slug, values)
    unarchived = client.get(f"/v1/collections/{slug}/snapshots/{snapshot_id}")  # rebuilt from its rows
    # The rebuilt file is in hand to name its digest, so its HEAD gives its length too.
    head = client.head(f"/v1/collections/{slug}/snapshots/{snapshot_id}")
    assert head.headers["content-length"] == str(len(unarchived.content)) and head.content == b""
    uri, error = pipeline.archive_snapshot(get_settings().for_collection(slug), snapshot_id, values)
    assert error is None
    archived = client.get(f"/v1/collections/{slug}/snapshots/{snapshot_id}")
    with session_scope() as session:  # the store loses the object: rebuilt, since its rows are whole
        session.execute(update(NowcastSnapshot).where(NowcastSnapshot.id == snapshot_id)
                        .values(archive_uri=uri + ".gone"))
    lost = client.get(f"/v1/collections/{slug}/snapshots/{snapshot_id}")
    with session_scope() as session:
        session.execute(update(NowcastSnapshot).where(NowcastSnapshot.id == snapshot_id).values(archive_uri=uri))
    thin_as_retention_does(snapshot_id)
    thinned = client.get(f"/v1/collections/{slug}/snapshots/{snapshot_id}")

    assert unarchived.content == archived.content == lost.content == thinned.content
    assert unarchived.headers["etag"] == archived.headers["etag"] == lost.headers["etag"] == thinned.headers["etag"]
    assert unarchived.headers["cache-control"] == "no-cache"  # a rebuild: only the archive's digest is final
    assert "immutable" in archived.headers["cache-control"]
    assert [(r["item_key"], r["fair_value"], r["last_price"]) for r in rows_of(thinned.content)] == [
        ("a", "10.5", "10"), ("b", "20.25", ""), ("c", "30", "31")]
    with session_scope() as session:  # the archive not its bytes and no rows left: no retry helps, a 500 saying so
        session.execute(update(NowcastSnapshot).where(NowcastSnapshot.id == snapshot_id)
                        .values(archive_sha256="0" * 64))
    broken = client.get(f"/v1/collections/{slug}/snapshots/{snapshot_id}")
    assert broken.status_code == 500 and "is not the one registered" in broken.json()["error"], broken.text


def test_the_home_page_links_the_published_snapshot_file(client):
    import re

    home = client.get("/", headers={"accept": "text/html"}).text
    link = re.search(r'href="(/v1/collections/cryptopunks/snapshots/(\d+))" download', home)
    assert link, home[:3000]
    answer = client.get(link.group(1))
    assert answer.status_code == 200 and answer.headers["x-snapshot-id"] == link.group(2)


def test_the_published_snapshots_are_listed_newest_first_with_their_files(client):
    listed = client.get("/v1/collections/cryptopunks/snapshots?limit=500").json()
    page = client.get("/v1/collections/cryptopunks/snapshots?limit=1&offset=1").json()

    snapshots = listed["snapshots"]
    assert listed["total"] == len(snapshots) >= 1 and listed["next_offset"] is None
    stamps = [s["published_at"] for s in snapshots]
    assert stamps == sorted(stamps, reverse=True)
    current = [s for s in snapshots if s["current"]]
    published_id = client.get("/v1/collections/cryptopunks/snapshots/published").headers["x-snapshot-id"]
    assert [str(s["id"]) for s in current] == [published_id]
    assert current[0]["archived"] is True and current[0]["thinned_at"] is None and current[0]["n_items"] == 10_000
    assert client.get(current[0]["file"]).headers["x-snapshot-id"] == published_id
    if len(snapshots) > 1:
        assert page["snapshots"] == snapshots[1:2]
    for bad in ("limit=0", "limit=501", "offset=-1", "limit=x"):
        assert client.get(f"/v1/collections/cryptopunks/snapshots?{bad}").status_code == 400, bad
