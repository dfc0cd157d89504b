"""The card collector's fetched answers survive the artifact store unchanged, so a retry of the
store step reads what the paid API said (fairvalue/card_prices.py save_fetched/load_fetched)."""

from __future__ import annotations

import os
import time
from datetime import date
from urllib.parse import urlparse
from urllib.request import url2pathname

from fairvalue.card_prices import (
    FetchedPrices,
    answered_for_the_day,
    kept_for_day,
    load_fetched,
    save_fetched,
    with_cards_asked_again,
)
from storage.artifacts import LocalStore


def test_kept_answers_read_back_as_they_were_fetched(tmp_path):
    fetched = FetchedPrices("cards", date(2026, 12, 5), "api:http://prices", cards=2,
                            answers={"base1-4": {"data": [{"priceHistory": {"2026-12-04": 412.5}}]}},
                            failures={"base1-2": {"reason": "timeout", "detail": "the answer took over 5s",
                                                  "attempts": 3, "external_id": "42"}},
                            waits=[0.5, 1.0])
    store = LocalStore(tmp_path)
    kept = save_fetched(store, fetched)
    assert "card-prices/cards/2026-12-05-" in kept["uri"] and kept["uri"].endswith(".json")
    assert load_fetched(store, kept) == fetched
    assert save_fetched(store, fetched) == kept  # the same answers: the same artifact


def test_the_answers_kept_for_a_day_are_found_by_collection_and_day(tmp_path):
    """A run delivered again (or run again) the same day finds what the first one kept, newest first;
    another day's or another collection's answers are not its own."""
    store = LocalStore(tmp_path)
    day = date(2026, 12, 5)
    assert kept_for_day(store, "cards", day) is None
    first = save_fetched(store, FetchedPrices("cards", day, "api:http://prices", cards=1, answers={"a": 1}))
    save_fetched(store, FetchedPrices("cards", date(2026, 12, 4), "api:http://prices", cards=1, answers={"a": 0}))
    save_fetched(store, FetchedPrices("other", day, "api:http://prices", cards=1, answers={"a": 2}))
    (tmp_path / "card-prices" / "cards" / ".tmp-half-written").write_bytes(b"{")
    assert kept_for_day(store, "cards", day) == first
    later = save_fetched(store, FetchedPrices("cards", day, "api:http://prices", cards=1, answers={"a": 3}))
    os.utime(url2pathname(urlparse(later["uri"]).path), (time.time() + 5, time.time() + 5))
    assert kept_for_day(store, "cards", day) == later
    assert load_fetched(store, later).answers == {"a": 3}


def test_cards_asked_again_complete_the_kept_answers():
    """A card answered by either fetch has its answer; a card failed by the first and answered by
    the second is no longer failed; one failed by both keeps the second failure."""
    day = date(2026, 12, 5)
    kept = FetchedPrices("cards", day, "api:http://prices", cards=3, answers={"a": 1},
                         failures={"b": {"reason": "timeout"}, "c": {"reason": "http_404"}}, waits=[0.5])
    again = FetchedPrices("cards", day, "api:http://prices", cards=3, answers={"b": 2},
                          failures={"c": {"reason": "http_500"}, "d": {"reason": "timeout"}}, waits=[1.0])
    merged = with_cards_asked_again(kept, again)
    assert merged.answers == {"a": 1, "b": 2}
    assert merged.failures == {"c": {"reason": "http_500"}, "d": {"reason": "timeout"}}
    assert (merged.cards, merged.day, merged.waits, merged.stopped) == (4, day, [0.5, 1.0], None)
    again.stopped = "SoftTimeLimitExceeded: "
    assert with_cards_asked_again(kept, again).stopped == again.stopped  # the run ends failed after storing


def test_a_kept_answer_without_a_price_is_asked_again_once_a_day_and_the_new_answer_replaces_it(tmp_path):
    """An answer that gives no price row (no card object, or neither priceHistory nor a market
    price) may be the API's passing fault: a second run the same day asks for it, as for a failure,
    but once: a retry after that (a database error) or a third run does not pay for it again."""
    day = date(2026, 12, 5)
    kept = FetchedPrices("cards", day, "api:http://prices", cards=4,
                         answers={"history": {"data": [{"priceHistory": {"2026-12-04": 412.5}}]},
                                  "market": {"data": {"prices": {"market": 3.5}}},
                                  "no-price": {"data": [{"prices": {}}]},
                                  "garbled": "<html>busy</html>"})
    assert answered_for_the_day(kept) == {"history", "market"}
    again = FetchedPrices("cards", day, "api:http://prices", cards=2,
                          answers={"no-price": {"data": [{"prices": {"market": 9.0}}]}},
                          failures={"garbled": {"reason": "timeout"}})
    merged = with_cards_asked_again(kept, again)
    assert merged.answers["no-price"] == {"data": [{"prices": {"market": 9.0}}]}
    assert merged.answers["garbled"] == "<html>busy</html>" and merged.failures == {}  # its rejection stays
    assert merged.reasked == ["garbled", "no-price"]
    store = LocalStore(tmp_path)
    read_back = load_fetched(store, save_fetched(store, merged))
    assert read_back == merged and answered_for_the_day(read_back) == {"history", "market", "no-price", "garbled"}
    stopped_early = FetchedPrices("cards", day, "api:http://prices", cards=1, answers={}, stopped="time limit")
    assert with_cards_asked_again(kept, stopped_early).reasked == []  # not asked: still asked for next time


def test_two_answers_kept_within_the_stores_time_resolution_are_told_apart_by_what_they_hold(tmp_path):
    """S3's LastModified is to the second: a run asking again for a few cards right after the first
    kept its answers may keep the completed answers within the same second. The one holding more
    answers is read, whichever key sorts first, so the next run does not pay for them again."""
    store = LocalStore(tmp_path)
    day = date(2026, 12, 5)
    first = save_fetched(store, FetchedPrices("cards", day, "api:http://prices", cards=2, answers={"a": 1},
                                              failures={"b": {"reason": "timeout"}}))
    # The fuller answers' key (its sha256) sorting first: picked by key, as before, the tie read the other.
    fuller = next(kept for price in range(1, 1000) if (kept := save_fetched(
        store, FetchedPrices("cards", day, "api:http://prices", cards=2, answers={"a": 1, "b": price})))["uri"]
        < first["uri"])
    for stray in tmp_path.rglob("*.json"):  # the tries that sorted after it
        if stray.as_uri() not in (fuller["uri"], first["uri"]):
            stray.unlink()
    same_moment = time.time() - 10
    for kept in (fuller, first):
        os.utime(url2pathname(urlparse(kept["uri"]).path), (same_moment, same_moment))
    assert len(store.newest("card-prices/cards/2026-12-05.json")) == 2
    assert kept_for_day(store, "cards", day) == fuller
