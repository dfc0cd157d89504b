"""The daily card price collection on a real worker: a database error while storing is retried from
the answers the paid API already gave (kept as an artifact), not by asking the API again; so is a
second delivery or run the same day; and a run the API slows past its time limit is stopped."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import text
from sqlmodel import select

from storage.db import get_engine, session_scope
from storage.ingest import ensure_collection
from storage.tables import DailyPrice, TaskRun
from tasks import names
from tasks.app import app
from tests.fake_price_api import PRICE, YESTERDAY, PriceAPIHandler, serving
from tests.realparts import start_worker, stop_worker, wait_for

# The worker asks for a nowcast of each collection it prices, and no worker of this file takes it.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("leaves_nothing_queued")]
COLLECTION = "cardsretry"
QUEUE = "cards-retry-test"  # its own queue: no other worker of the session takes the task


class CountingPriceAPI(PriceAPIHandler):
    """Every card's answer: its price (reply_with_the_price). Counts the requests (each one paid)."""

    calls: list[str] = []
    delay = 0.0  # seconds each answer takes (a rate-limited API)
    refuse_next = 0  # the next so many requests get a 404 (a card the API does not know today)
    refused: list[str] = []

    def do_GET(self):
        CountingPriceAPI.calls.append(self.path)
        time.sleep(CountingPriceAPI.delay)
        if CountingPriceAPI.refuse_next > 0:
            CountingPriceAPI.refuse_next -= 1
            CountingPriceAPI.refused.append(self.path)
            self.reply(404, b"", content_type=None)
            return
        self.reply_with_the_price()


@pytest.fixture
def price_api():
    with serving(CountingPriceAPI) as url:
        yield url


def _load_cards(slug: str) -> None:
    from fairvalue.card_universe import load_universe, read_universe
    from fairvalue.settings import get_settings

    universe = read_universe(get_settings().cards_config)
    universe.collection = slug
    load_universe(universe)


@pytest.fixture
def retry_cards(database, s3):
    _load_cards(COLLECTION)


def _runs(collection: str = COLLECTION) -> list[TaskRun]:
    with session_scope() as session:
        return session.exec(select(TaskRun).where(TaskRun.task_name == names.CARD_PRICES,
                                                  TaskRun.collection == collection).order_by(TaskRun.id)).all()


def _worker_waiting_on_a_lock() -> int | None:
    # A connection of its own each time: within one transaction pg_stat_activity does not change.
    with get_engine().connect() as conn:
        return conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar()


def test_a_database_error_while_storing_is_retried_without_fetching_again(retry_cards, price_api, broker, tmp_path):
    env = {"FAIRVALUE_CARD_PRICE_API_URL": price_api, "FAIRVALUE_CARD_PRICE_API_KEY": "k-retry"}
    worker = start_worker("cards-retry", QUEUE, tmp_path, env)
    CountingPriceAPI.calls.clear()
    try:
        # A real database error in the store step: the prices table is locked, the worker's store
        # waits on it, and its connection is terminated (as by a failover); then the lock goes.
        with get_engine().connect() as locker:
            locker.execute(text("LOCK TABLE daily_prices IN ACCESS EXCLUSIVE MODE"))
            app.send_task(names.CARD_PRICES, kwargs={"collection": COLLECTION}, queue=QUEUE)
            waiting = wait_for(_worker_waiting_on_a_lock, timeout=120, interval=0.2)
            fetched_before_the_error = len(CountingPriceAPI.calls)
            locker.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": waiting})
            wait_for(lambda: any(r.status == "failed" for r in _runs()), timeout=60, interval=0.2)
            locker.rollback()  # the lock goes
        wait_for(lambda: any(r.status == "ok" for r in _runs()), timeout=120, interval=0.5)
    finally:
        stop_worker(worker)
    first, retry = _runs()[:2]
    assert "OperationalError" in first.detail["error"]
    assert retry.status == "ok" and retry.detail["stored_from_kept_answers"] is True
    assert retry.detail["answers"]["uri"].endswith(".json")
    cards = retry.detail["cards"]
    assert cards > 0 and fetched_before_the_error == cards
    assert len(CountingPriceAPI.calls) == cards  # each card fetched once: the retry asked nothing
    with session_scope() as session:
        coll = ensure_collection(session, COLLECTION)
        prices = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id)).all()
    assert len(prices) == cards and {(p.day, p.price) for p in prices} == {(YESTERDAY, PRICE)}
    assert retry.detail["prices"]["new"] == cards


def test_a_second_delivery_the_same_day_stores_from_the_kept_answers(database, s3, price_api, broker, tmp_path):
    """The broker gives a message back after its visibility timeout (or its worker died), or the run
    is sent again the same day: the answers kept for the day are stored, and the paid API is asked
    only for the two cards it failed the first time."""
    slug = "cardskept"  # its own collection: no other test's answers are kept for it
    _load_cards(slug)
    env = {"FAIRVALUE_CARD_PRICE_API_URL": price_api, "FAIRVALUE_CARD_PRICE_API_KEY": "k-kept",
           "FAIRVALUE_CARD_PRICE_TIME_LIMIT_SECONDS": "1800"}
    worker = start_worker("cards-kept", QUEUE, tmp_path, env)
    CountingPriceAPI.calls.clear()
    CountingPriceAPI.refused.clear()
    CountingPriceAPI.refuse_next = 2
    try:
        # The task's time limits, as the worker registered them (from the setting).
        node = f"cards-kept@{socket.gethostname()}"
        registered = app.control.inspect(timeout=5, destination=[node]).registered("soft_time_limit", "time_limit")
        assert f"{names.CARD_PRICES} [soft_time_limit=1800 time_limit=2100]" in registered[node]
        app.send_task(names.CARD_PRICES, kwargs={"collection": slug}, queue=QUEUE, task_id="cards-kept-once")
        wait_for(lambda: [r.status for r in _runs(slug)] == ["ok"], timeout=120, interval=0.5)
        paid = len(CountingPriceAPI.calls)
        # The same message once more (a redelivery has the same id and arguments).
        app.send_task(names.CARD_PRICES, kwargs={"collection": slug}, queue=QUEUE, task_id="cards-kept-once")
        wait_for(lambda: [r.status for r in _runs(slug)] == ["ok", "ok"], timeout=120, interval=0.5)
    finally:
        stop_worker(worker)
    first, again = _runs(slug)
    assert paid == first.detail["cards"] > 2 and first.detail["prices"]["new"] == paid - 2
    assert len(first.detail["cards_failed"]) == 2 and len(CountingPriceAPI.refused) == 2
    # The second run asked the API for the two refused cards, and for nothing else.
    assert sorted(CountingPriceAPI.calls[paid:]) == sorted(CountingPriceAPI.refused)
    assert again.detail["stored_from_kept_answers"] is True and again.detail["cards_asked_again"] == 2
    assert again.detail["answers"] != first.detail["answers"]  # the completed answers, kept again
    assert again.detail["cards"] == paid and again.detail["cards_failed"] == {}
    assert again.detail["prices"]["new"] == 2
    with session_scope() as session:
        coll = ensure_collection(session, slug)
        prices = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id)).all()
    assert len(prices) == paid


def test_a_run_slowed_past_its_time_limit_is_stopped(database, s3, price_api, broker, tmp_path):
    """A rate-limited API (each answer 1 s, 40 cards) against a 3 s limit on the prefork pool, which
    enforces it: the run is stopped and recorded failed, long before it would have ended, and keeps
    and stores the answers it paid for; the next run asks the API for the other cards only."""
    slug = "cardsslow"
    _load_cards(slug)
    env = {"FAIRVALUE_CARD_PRICE_API_URL": price_api, "FAIRVALUE_CARD_PRICE_API_KEY": "k-slow",
           "FAIRVALUE_CARD_PRICE_TIME_LIMIT_SECONDS": "3", "FAIRVALUE_TASK_KILL_GRACE_SECONDS": "5"}
    worker = start_worker("cards-slow", QUEUE, tmp_path, env, pool="prefork")
    CountingPriceAPI.calls.clear()
    CountingPriceAPI.delay = 1.0
    try:
        started = time.monotonic()
        app.send_task(names.CARD_PRICES, kwargs={"collection": slug}, queue=QUEUE)
        wait_for(lambda: [r.status for r in _runs(slug)] == ["failed"], timeout=60, interval=0.2)
        took = time.monotonic() - started
        paid_while_slow = len(CountingPriceAPI.calls)
        CountingPriceAPI.delay = 0.0
        app.send_task(names.CARD_PRICES, kwargs={"collection": slug}, queue=QUEUE)
        wait_for(lambda: [r.status for r in _runs(slug)] == ["failed", "ok"], timeout=120, interval=0.5)
    finally:
        CountingPriceAPI.delay = 0.0
        stop_worker(worker)
    stopped, after = _runs(slug)
    assert "SoftTimeLimitExceeded" in stopped.detail["error"] and "StoppedEarly" in stopped.detail["error"]
    assert took < 20 and paid_while_slow < 10  # stopped after a few of the 40 cards
    answered = stopped.detail["cards"]  # the card being asked when the limit came is not one of them
    assert 0 < answered <= paid_while_slow and stopped.detail["prices"]["new"] == answered
    assert stopped.detail["answers"]["uri"].endswith(".json")
    # The next run stored from those answers and asked the API for every other card, once each.
    assert after.detail["stored_from_kept_answers"] is True
    assert after.detail["cards_asked_again"] == len(CountingPriceAPI.calls) - paid_while_slow
    assert after.detail["cards"] == answered + after.detail["cards_asked_again"]
    assert after.detail["cards_failed"] == {} and after.detail["prices"]["new"] == after.detail["cards"] - answered
    with session_scope() as session:
        coll = ensure_collection(session, slug)
        prices = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id)).all()
    assert len(prices) == after.detail["cards"]
