"""PostgreSQL restarts under API load, on a private cluster (the shared server stays up).

The API runs as its own uvicorn process against the private cluster while threads keep
reading; the cluster is stopped (immediate: a crash) and started again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import httpx
import pandas as pd
import pytest

from storage.db import engine_for, session_scope
from storage.ingest import add_items, ensure_collection
from storage.migrate import upgrade
from storage.snapshots import publish, write_snapshot
from storage.tables import ModelVersion, utcnow
from tests.faults.servers import PrivatePostgres, free_port
from tests.realparts import ROOT, wait_for

pytestmark = pytest.mark.integration
PATHS = ["/v1/items/1", "/v1/valuations?ids=1,2,3", "/readyz", "/healthz", "/v1/models"]


def minimal_market(url: str) -> None:
    """Schema, three items and a published snapshot: enough for every read path and readiness."""
    upgrade(url)
    engine = engine_for(url)
    with session_scope(engine) as session:
        coll = ensure_collection(session, "cryptopunks")
        add_items(session, coll, [{"item_key": k, "item_type": "Male"} for k in ("1", "2", "3")])
        version = ModelVersion(collection_id=coll.id, version=1, estimator="fixture", artifact_uri="s3://none/x",
                               sha256="0" * 64)
        session.add(version)
        session.flush()
        values = pd.DataFrame({"item_key": ["1", "2", "3"], "fair_value": [10.0, 20.0, 30.0], "p10": [8.0] * 3,
                               "p90": [40.0] * 3, "signal": ["HOLD"] * 3, "last_price": [None] * 3,
                               "last_sale_at": pd.to_datetime([None] * 3)})
        snapshot = write_snapshot(session, coll, version.id, utcnow() - timedelta(minutes=1), None, values)
    with session_scope(engine) as session:
        publish(session, coll, snapshot)


class Load:
    """Threads reading every path in a loop; each answer kept as (sent, path, status, body, received)."""

    def __init__(self, base: str, threads: int = 4):
        self.base, self.answers, self._stop = base, [], threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base, timeout=15) as http:
            i = offset
            while not self._stop.is_set():
                path = PATHS[i % len(PATHS)]
                i += 1
                sent = time.time()
                try:
                    r = http.get(path)
                    self.answers.append((sent, path, r.status_code, r.text, time.time()))
                except httpx.HTTPError as exc:  # the API process itself must never go away
                    self.answers.append((sent, path, None, repr(exc), time.time()))
                time.sleep(0.02)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=20)


def test_postgres_restart_under_api_load(tmp_path):
    """Afterwards: readiness went 503 while the database was down and 200 again after, with no
    restart of the API process; liveness stayed 200; no answer was a 500, and every refusal
    was JSON with a reason; reads serve the snapshot again."""
    pg = PrivatePostgres().init().start()
    api = None
    try:
        minimal_market(pg.url)
        port = free_port()
        env = {**os.environ, "FAIRVALUE_DATABASE_URL": pg.url}
        log = (tmp_path / "api.log").open("w")
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:app", "--port", str(port),
                                "--log-level", "warning"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"

        def status(path: str) -> int | None:
            try:
                return httpx.get(base + path, timeout=10).status_code
            except httpx.HTTPError:
                return None

        wait_for(lambda: status("/readyz") == 200, timeout=60, interval=0.2)
        with Load(base) as load:
            time.sleep(1.0)
            pg.stop("immediate")
            down_at = time.time()
            wait_for(lambda: any(a[1] == "/readyz" and a[2] == 503 and a[0] > down_at for a in load.answers),
                     timeout=30, interval=0.1)
            # Down until an item read has met the outage too: the held snapshot answers for up to
            # FAIRVALUE_API_SNAPSHOT_CHECK_SECONDS, and a loaded host may send none in a fixed time.
            wait_for(lambda: any(a[1] == "/v1/items/1" and a[2] == 503 and a[0] > down_at for a in load.answers),
                     timeout=60, interval=0.1)
            restart_at = time.time()  # the server accepts connections before pg_ctl returns
            pg.start()
            up_at = time.time()
            wait_for(lambda: any(a[1] == "/readyz" and a[2] == 200 and a[0] > up_at for a in load.answers)
                     and any(a[1] == "/v1/items/1" and a[2] == 200 and a[0] > up_at for a in load.answers),
                     timeout=60, interval=0.2)
            time.sleep(0.5)
        assert api.poll() is None, "the API process died"
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=20)
        pg.destroy()

    answers = load.answers
    print("answers by (path, status):", Counter((a[1], a[2]) for a in answers))
    assert all(a[2] is not None for a in answers), [a for a in answers if a[2] is None][:3]
    assert not [a for a in answers if a[2] >= 500 and a[2] != 503], "a 5xx other than 503"
    for _, _path, code, text, _ in answers:
        if code >= 400:
            body = httpx.Response(code, text=text).json()
            assert body["status"] == code and body["error"], body
    during = [a for a in answers if down_at < a[0] and a[4] < restart_at]
    assert {a[2] for a in during if a[1] == "/readyz"} == {503}
    assert {a[2] for a in answers if a[1] == "/healthz"} == {200}  # liveness: nothing to restart
    assert any(a[1] == "/v1/items/1" and a[2] == 503 for a in during)
    readyz_down = next(a[3] for a in during if a[1] == "/readyz")
    assert "down" in readyz_down and "database" in readyz_down
