"""The README's first command on embedded defaults: no PostgreSQL, Redis or S3, just files.

Runs `fairvalue up` in a fresh directory as a user would, waits for the API to value punk
7804, then sends a signed sale and sees the embedded worker publish a new snapshot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from api import signing
from tests.conftest import _free_port
from tests.realparts import dies_with_tests

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_up_serves_a_fair_value_and_follows_a_webhook(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRVALUE_")}
    # Few boosting rounds, as in the other tests: what is tested is that `up` prepares and runs
    # everything on files, not the model (its first training took 10 s longer at 40 rounds), and
    # one learning-curve split as in tests/conftest.py (the default three tripled its holdout step).
    env.update(FAIRVALUE_API_PORT=str(port), FAIRVALUE_TRAIN_MAX_ITER="8", FAIRVALUE_LEARNING_CURVE_SPLITS="1",
               FAIRVALUE_WEBHOOK_SECRET="embedded")
    log = (tmp_path / "up.log").open("w")
    # TERM, not KILL, if this test process dies: `up` then stops its own API, worker and beat.
    proc = subprocess.Popen(dies_with_tests([sys.executable, "-m", "fairvalue.cli", "up"], on_death="TERM"),
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        item = None
        while time.time() < deadline and item is None:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            item = _get(f"{base}/v1/items/7804")
            time.sleep(0.25)
        assert item is not None, (tmp_path / "up.log").read_text()[-3000:]
        assert item["fair_value"] > 0 and item["type"] == "Alien"
        assert (tmp_path / "var" / "fairvalue.db").exists()
        said = " ".join((tmp_path / "up.log").read_text().split())  # rich wraps at its width
        # The first training in a line, not `fairvalue train`'s page of numbers.
        assert "registered version 1 (champion): forward MAPE" in said and '"learning_curve"' not in said, said

        a_minute_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        sale = {"event_id": "embedded-1", "timestamp": a_minute_ago, "punk_id": 7804, "price_eth": 4500}
        body = json.dumps(sale).encode()
        request = urllib.request.Request(f"{base}/v1/webhooks/sales", data=body, method="POST",
                                         headers={signing.HEADER: signing.sign("embedded", body)})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            assert json.loads(response.read())["accepted"] == 1

        deadline = time.time() + 90
        while time.time() < deadline:
            now = _get(f"{base}/v1/items/7804")
            if now and now["snapshot"]["id"] != item["snapshot"]["id"]:
                break
            time.sleep(0.25)
        else:
            pytest.fail("no new snapshot after the webhook:\n" + (tmp_path / "up.log").read_text()[-3000:])
        assert now["last_sale"]["price"] == 4500
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
