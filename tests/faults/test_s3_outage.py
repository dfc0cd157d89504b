"""The S3 endpoint goes away during a nowcast's archive, and comes back.

The worker reaches S3 through a TCP proxy the test can cut (the shared moto server stays up,
so no other test sees the outage)."""

from __future__ import annotations

import gzip
import time

import pytest
from sqlmodel import select

import beat_schedule
from storage.artifacts import sha256_hex
from storage.db import session_scope
from storage.tables import NowcastSnapshot, TaskRun
from tasks.app import app
from tests.faults.servers import TcpProxy
from tests.realparts import served_from, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration
QUEUE = "faults-s3"  # only this test's worker listens here


def finished(task_id: str) -> TaskRun | None:
    with session_scope() as session:
        run = session.exec(select(TaskRun).where(TaskRun.task_id == task_id)).first()
        return run if run is not None and run.status != "running" else None


def run_on_worker(task: str) -> TaskRun:
    task_id = app.send_task(task, queue=QUEUE).id
    return wait_for(lambda: finished(task_id), timeout=180)


def assert_hourly_retry_archives(snapshot_id: int) -> None:
    """The hourly archive retry, run on the worker once S3 answers again, archives the snapshot."""
    retry = run_on_worker(beat_schedule.SCHEDULE["archive-retry-hourly"]["task"])
    assert retry.status == "ok", retry.detail
    assert str(snapshot_id) in retry.detail["archived"]


def snapshot(snapshot_id: int) -> NowcastSnapshot:
    with session_scope() as session:
        return session.get(NowcastSnapshot, snapshot_id)


def test_s3_down_during_archive(seeded, s3, client, tmp_path):
    """Afterwards: the nowcast made during the outage was published and served at once, its
    archive error recorded in the task run; once S3 answered again the archive retry (beat's
    hourly task) stored it, and the archived bytes match the recorded sha256 and hold every item."""
    from tests.conftest import S3_PORT

    proxy = TcpProxy(S3_PORT).up()
    worker = start_worker("s3-worker", QUEUE, tmp_path, {"FAIRVALUE_S3_ENDPOINT_URL": proxy.url})
    try:
        warm = run_on_worker("fairvalue.nowcast")  # loads (and verifies) the champion while S3 is up
        assert warm.status == "ok" and warm.detail["archive_uri"], warm.detail

        proxy.down()
        during = run_on_worker("fairvalue.nowcast")
        assert during.status == "ok", during.detail
        assert during.detail["published"] is True and during.detail["archive_uri"] is None
        assert "cannot write" in during.detail["archive_error"]
        unarchived = during.detail["snapshot_id"]
        served_from(client, unarchived)  # served during the outage
        retry_while_down = run_on_worker(beat_schedule.SCHEDULE["archive-retry-hourly"]["task"])
        assert retry_while_down.status == "failed" and str(unarchived) in retry_while_down.detail["failed"]

        proxy.up()
        assert_hourly_retry_archives(unarchived)
    finally:
        stop_worker(worker)
        proxy.down()

    snap = snapshot(unarchived)
    assert snap.status == "published" and snap.archive_uri and snap.archive_sha256
    data = s3.get(snap.archive_uri, snap.archive_sha256)  # raises unless the sha256 matches
    assert sha256_hex(data) == snap.archive_sha256
    lines = gzip.decompress(data).decode().splitlines()
    assert lines[0].startswith("item_key,fair_value,p10,p90,signal") and len(lines) == 10_001


def test_s3_hangs_during_archive(seeded, s3, client, tmp_path):
    """An S3 that accepts connections and never answers holds a nowcast for the short budget
    (FAIRVALUE_S3_SHORT_TIMEOUT_SECONDS, one attempt), not the patient client's 4 x 30 s: the
    snapshot is published and served, the archive's timeout recorded in the run, and a shadow
    whose artifact the worker has not loaded yet is skipped after the same budget; once S3
    answers again, the hourly archive retry stores it."""
    from fairvalue.settings import get_settings
    from storage.ingest import ensure_collection
    from storage.registry import CHAMPION, CONTENDER, get_alias, load_model, register_version, remove_alias, set_alias
    from tests.conftest import S3_PORT

    short = get_settings().s3_short_timeout_seconds
    earlier = None
    proxy = TcpProxy(S3_PORT).up()
    worker = start_worker("s3-hung-worker", QUEUE, tmp_path, {"FAIRVALUE_S3_ENDPOINT_URL": proxy.url})
    try:
        warm = run_on_worker("fairvalue.nowcast")  # loads (and verifies) the champion while S3 answers
        assert warm.status == "ok" and warm.detail["archive_uri"], warm.detail
        with session_scope() as session:  # a contender in shadow whose artifact the worker never read
            coll = ensure_collection(session, "cryptopunks")
            champion, earlier = get_alias(session, coll, CHAMPION), get_alias(session, coll, CONTENDER)
            model = load_model(s3, champion)
            model.params = {**model.params, "note": "a shadow only this test made"}  # other bytes, another sha256
            shadow = register_version(session, s3, coll, model, {}, champion.data_start, champion.data_end,
                                      champion.n_train, "test")
            set_alias(session, coll, CONTENDER, shadow)

        proxy.hang()
        during = run_on_worker("fairvalue.nowcast")
        assert during.status == "ok", during.detail
        assert during.detail["published"] is True and during.detail["archive_uri"] is None
        error = during.detail["archive_error"]
        assert "cannot write" in error and "timeout" in error.lower(), error
        # One attempt that waited one read timeout (slack for a loaded host), not minutes.
        seconds = during.detail["seconds"]
        assert short <= seconds["archive"] < short + 5, seconds
        assert "timeout" in during.detail["shadow_errors"]["contender"].lower(), during.detail
        assert short <= seconds["shadows"] < short + 5, seconds
        unarchived = during.detail["snapshot_id"]
        served_from(client, unarchived)  # served while S3 hangs

        proxy.answer()
        assert_hourly_retry_archives(unarchived)
    finally:
        stop_worker(worker)
        proxy.down()
        with session_scope() as session:  # the contender as it was before this test
            coll = ensure_collection(session, "cryptopunks")
            if earlier is None:
                remove_alias(session, coll, CONTENDER)
            else:
                set_alias(session, coll, CONTENDER, earlier)

    snap = snapshot(unarchived)
    assert snap.archive_uri and sha256_hex(s3.get(snap.archive_uri, snap.archive_sha256)) == snap.archive_sha256


def test_s3_hangs_under_an_explanation(seeded, s3, client, monkeypatch):
    """The explanation reads the published snapshot's model from the store unless this process
    verified it before. With S3 hung it answers 503 with the reason after the short budget (it was
    a 500 after the patient 4 x 30 s), the item's page still renders and says why, and once S3
    answers the explanation is served."""
    from fairvalue import explanations
    from fairvalue.settings import get_settings
    from storage import registry
    from tests.conftest import S3_PORT

    proxy = TcpProxy(S3_PORT).up()
    monkeypatch.setenv("FAIRVALUE_S3_ENDPOINT_URL", proxy.url)
    get_settings.cache_clear()
    try:
        short = get_settings().s3_short_timeout_seconds
        with registry._VERIFIED_LOCK:  # the model as a fresh API process finds it: not read yet
            registry._VERIFIED.clear()
        explanations._model_and_market.cache_clear()
        proxy.hang()
        started = time.monotonic()
        answer = client.get("/v1/items/7804/explanation")
        seconds = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert "cannot be read from the artifact store now; retry later" in answer.json()["error"], answer.json()
        for detail in (proxy.url, "127.0.0.1", "s3://"):  # the store's endpoint and keys stay in the log
            assert detail not in answer.text, detail
        assert seconds < short + 5, seconds  # one attempt of the short budget (slack for a loaded host)
        page = client.get("/items/7804", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "cannot be read from the artifact store now" in page.text

        proxy.answer()
        answer = client.get("/v1/items/7804/explanation")
        assert answer.status_code == 200, answer.text
        assert answer.json()["matches_published"] is True
    finally:
        proxy.down()
        monkeypatch.undo()
        get_settings.cache_clear()
        explanations._model_and_market.cache_clear()  # its model came through the proxy
