"""Browser tests: the real app served by uvicorn on a free port, a published history to score, and
headless Debian Chromium driven through its matching chromedriver (Selenium; never a downloaded
browser). `./run test` installs the packages chromium and chromium-driver when they are missing.

They live under tests/integration so they share the session's seeded database, S3 and broker.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.realparts import no_other_nowcast_pending, wait_for

CHROMIUM = Path(os.environ.get("FAIRVALUE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FAIRVALUE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = Path(os.environ.get("FAIRVALUE_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts")) / "screenshots"
TAKEN: list[Path] = []  # printed in the terminal summary

# Moments the fixture publishes a nowcast for, spanning the window test_pages.py asks the pages for
# (the bundled sales end on 2021-12-31); the last one, just after the last sale, is what the
# pointer shows during the tests, so recent last sales give BUY and SELL signals.
HISTORY = [datetime(2021, 10, 6, tzinfo=UTC), datetime(2021, 11, 3, tzinfo=UTC), datetime(2021, 12, 1, tzinfo=UTC),
           datetime(2022, 1, 1, tzinfo=UTC)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def published_history(seeded):
    """Nowcasts valued at past moments and marked published a minute later, as the live loop would
    have left them, so the performance and backtest pages have forward pairs to show. (The champion
    saw later sales: this exercises the pages, not the model's accuracy.) The last one is pointed at
    as the published snapshot. Afterwards the pointer is put back and the snapshots removed, so
    tests of other modules see the database as the seeded fixture left it."""
    from sqlalchemy import delete, update

    from fairvalue import pipeline
    from fairvalue.item_reads import PUBLISHED
    from storage.db import session_scope
    from storage.tables import NowcastRow, NowcastSnapshot, PublishedSnapshot

    # A follow-up nowcast an earlier file left queued or held would publish over the pointer moved
    # below, in the middle of these tests: wait until none is pending (nothing here asks for one).
    wait_for(no_other_nowcast_pending, timeout=120)
    made: list[int] = []  # every snapshot written, shadows included
    for as_of in HISTORY:
        result = pipeline.nowcast(as_of=as_of)
        made += [result.snapshot_id, *result.shadows.values()]
        last = result.snapshot_id
        with session_scope() as session:
            session.execute(update(NowcastSnapshot.__table__).where(NowcastSnapshot.id == result.snapshot_id)
                            .values(status="published", published_at=as_of + timedelta(minutes=1)))
    with session_scope() as session:
        collection_id = session.get(NowcastSnapshot, last).collection_id
        pointer = session.get(PublishedSnapshot, collection_id)
        original = (pointer.snapshot_id, pointer.published_at)
        pointer.snapshot_id, pointer.published_at = last, HISTORY[-1] + timedelta(minutes=1)
        session.add(pointer)
    # The pointer moved behind the service's back (not through publish()), so the snapshot the API
    # holds in this process is dropped by hand, here and after putting the pointer back: otherwise
    # the next module's first reads could be answered, within the check interval, from the
    # history snapshot, removed by then.
    PUBLISHED.invalidate()
    yield made
    with session_scope() as session:
        pointer = session.get(PublishedSnapshot, collection_id)
        pointer.snapshot_id, pointer.published_at = original
        session.add(pointer)
        session.flush()
        session.execute(delete(NowcastRow.__table__).where(NowcastRow.snapshot_id.in_(made)))
        session.execute(delete(NowcastSnapshot.__table__).where(NowcastSnapshot.id.in_(made)))
    PUBLISHED.invalidate()


@pytest.fixture(scope="module")
def live_server(seeded):
    """The API app (pages included) under uvicorn in a thread; yields its base URL."""
    import uvicorn

    from api.app import app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-pages", daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, its console captured (goog:loggingPrefs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `./run test` installs the Debian packages chromium and "
                    "chromium-driver (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


def pytest_terminal_summary(terminalreporter):
    if TAKEN:
        terminalreporter.section("browser screenshots")
        for path in TAKEN:
            terminalreporter.write_line(str(path))
