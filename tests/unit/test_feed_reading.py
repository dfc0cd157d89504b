"""How a feed's rows are read: numbers as a feed writes them, ids as text or whole numbers, an
event id given twice in one call judged as the rows one after another would be, and a card
price answer whose fields cannot be read refused with why (never read past)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from models.listings import validate_listing
from models.price_rows import PriceReason, rows_from_api, validate_prices
from models.validation import FloorLookup, Reason, Rejection, feed_number, validate_batch, validate_row
from storage import ingest as ingest_store
from storage.listings import ingest_listings
from storage.tables import RejectedListing, RejectedSale
from storage.webhook_batch import WebhookCall, every_sale_conflicts, first_claims, settle
from storage.webhook_calls import ingest_calls

NOW = datetime(2024, 1, 10, tzinfo=UTC)
TODAY = date(2025, 7, 20)
ARABIC_123, FULL_WIDTH_12 = "\u0661\u0662\u0663", "\uff11\uff12"  # float() reads both: 123.0, 12.0


def sale(event_id: str = "e1", price=95.0, item="1", **extra) -> dict:
    return {"event_id": event_id, "timestamp": "2024-01-02T12:00:00Z", "item_key": item, "price": price, **extra}


def sale_outcome(row: dict):
    return validate_row(row, {"1", "5"}, FloorLookup({}), 0.2, NOW)


@pytest.mark.parametrize("text", [ARABIC_123, FULL_WIDTH_12, "1\u0662", "\u0663.5", "\U0001d7d3"])
def test_digits_other_than_ascii_are_no_number_a_feed_writes(text):
    """float() reads any script's decimal digits; a price feed writes 0-9, so "١٢٣" was stored as
    a sale at 123 (and as a listing, a card's price or volume)."""
    assert float(text) > 0 and feed_number(text) is None
    refused = sale_outcome(sale(price=text))
    assert (refused.reason, refused.row["price"]) == (Reason.MALFORMED_PRICE, text)
    assert "ASCII" in refused.detail
    listing = validate_listing(sale(price=text), {"1"}, NOW)
    assert isinstance(listing, Rejection) and listing.reason == Reason.MALFORMED_PRICE and "ASCII" in listing.detail
    cards = validate_prices([{"date": "2025-07-01", "card_id": "a", "market_price": text},
                             {"date": "2025-07-02", "card_id": "a", "market_price": "2", "volume": text}], {"a"}, TODAY)
    assert cards.clean == [] and [r.reason for r in cards.rejected] == [PriceReason.MALFORMED_PRICE,
                                                                        PriceReason.MALFORMED_VOLUME]
    assert all("ASCII" in r.detail for r in cards.rejected)
    assert feed_number(" 12 ") == 12.0 and feed_number("1e3") == 1000.0  # ASCII as before


def test_a_price_under_two_names_one_in_other_digits_is_not_read_as_agreeing():
    refused = sale_outcome(sale(price=ARABIC_123, price_eth=123))
    assert refused.reason == Reason.MALFORMED_ROW and "price is given twice" in refused.detail


def test_a_market_file_figure_in_other_digits_refuses_the_file(tmp_path):
    from storage.bundled import BadMarketFile, read_market_days

    path = tmp_path / "floor.csv"
    path.write_text(f"date,floor_eth\n2021-12-01,{ARABIC_123}\n", encoding="utf-8")
    with pytest.raises(BadMarketFile, match="line 2: floor_eth .* is not a number"):
        read_market_days(path, None)


def test_a_content_length_of_a_latin1_digit_is_read_as_none_not_a_crash():
    """A header is Latin-1: "²" is isdigit() to Python and int() refuses it (a 500)."""
    from starlette.requests import Request

    from api.webhooks import _read_limited

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-length", "\u00b2".encode("latin-1"))]}
    assert asyncio.run(_read_limited(Request(scope, receive), 100)) == b"{}"


# --- ids: text or a whole number, read alike for sales, listings and cards ---

def test_a_card_id_given_as_a_whole_float_is_the_cards_id_as_a_punks_is():
    """A JSON file's card id 5.0 was the card "5.0" (unknown), where 5 was "5", and a punk's 5.0 is "5"."""
    batch = validate_prices([{"date": "2025-07-01", "card_id": 5.0, "market_price": 2},
                             {"date": "2025-07-02", "card_id": 5, "market_price": 2}], {"5"}, TODAY)
    assert [(o.item_key, o.day) for o in batch.clean] == [("5", date(2025, 7, 1)), ("5", date(2025, 7, 2))]
    assert sale_outcome(sale(item=5.0)).item_key == "5"


@pytest.mark.parametrize("card", [5.5, True, ["5"], {"id": 5}, float("inf")])
def test_a_card_id_that_is_no_whole_number_or_text_is_refused_with_why(card):
    (refused,) = validate_prices([{"date": "2025-07-01", "card_id": card, "market_price": 2}], {"5", "True"},
                                 TODAY).rejected
    assert refused.reason == PriceReason.MALFORMED_ROW and "card_id" in refused.detail


@pytest.mark.parametrize("field, value", [("item_key", 5.5), ("event_id", 7.5)])
def test_an_id_with_a_fraction_is_refused_as_malformed_for_sales_and_listings(field, value):
    """5.5 was read as the punk "5.5" (refused as unknown, a reason that hid the fraction) and 7.5 as
    the event "7.5"; an id is text or a whole number (5.0 is "5")."""
    for outcome in (sale_outcome(sale(**{field: value})), validate_listing(sale(**{field: value}), {"5"}, NOW)):
        assert isinstance(outcome, Rejection) and outcome.reason == Reason.MALFORMED_ROW
        assert f"{field} {value!r} is not a whole number" in outcome.detail


@pytest.mark.parametrize("value, why", [
    (True, "must be text or a number, not bool"), (["5"], "must be text or a number, not list"),
    ({"id": 5}, "must be text or a number, not dict"), (float("inf"), "is a number past a float's range"),
    (float("-inf"), "is a number past a float's range")])
def test_a_card_id_and_a_sales_id_of_no_kind_an_id_has_are_refused_in_the_same_words(value, why):
    """What no id is, a card's (id_refusal) or a sale's (text_refusal before it), is one rule
    (models.validation.kind_refusal): the two said it in words kept in two places."""
    (card,) = validate_prices([{"date": "2025-07-01", "card_id": value, "market_price": 2}], {"5"}, TODAY).rejected
    sold = sale_outcome(sale(item=value))
    assert (card.reason, card.detail) == (PriceReason.MALFORMED_ROW, f"card_id {why}")
    assert (sold.reason, sold.detail) == (Reason.MALFORMED_ROW, f"item_key {why}")


def test_an_id_is_its_stripped_text_and_a_whole_float_the_integer_it_is():
    """models.validation.normalised_id, the one reading of an id that sales, listings and card
    prices share (price_rows imported it as the private _normalised_key)."""
    from models.validation import normalised_id

    given = (5.0, 5, " 5 ", " e1", -7.0, 1e20, "5.0")
    assert [normalised_id(v) for v in given] == ["5", "5", "5", "e1", "-7", "100000000000000000000", "5.0"]


# --- an event id twice in one call ---

def test_a_conflict_within_one_batch_names_its_event_id():
    batch = validate_batch([sale(price=95.0), sale(price=96.0)], {"1"}, FloorLookup({}), 0.2, NOW)
    (conflict,) = batch.rejected
    assert conflict.reason == Reason.DUPLICATE_CONFLICT and "'e1'" in conflict.detail
    assert "'e1'" in ingest_store.conflict_with_stored(batch.clean[0]).detail


def test_a_row_that_carries_the_stored_content_after_a_conflicting_twin_is_a_duplicate(sqlite_market):
    """e1 is stored at 95; a call sends e1 at 96, then e1 at 95. One after another, the first is a
    conflict and the second a duplicate; the second was kept as a conflict too (the batch kept its
    first row of e1 and refused the other), and every row a conflict, a webhook answered 409."""
    session, coll = sqlite_market
    ingest_store.ingest_sales(session, coll, [sale(price=95.0)], "test", 0.2)
    for _ in range(2):  # the same file twice: the same answer, nothing more kept
        report = ingest_store.ingest_sales(session, coll, [sale(price=96.0), sale(price=95.0)], "test", 0.2)
        assert (report.accepted, report.duplicate, report.rejected) == (0, 1, 1)
    (outcome,) = ingest_calls(session, "cryptopunks", [WebhookCall([sale(price=96.0), sale(price=95.0)], b"{}",
                                                                   "d1", 1, "t")], 0.2)
    assert (outcome.report.duplicate, outcome.report.rejected) == (1, 1) and not every_sale_conflicts(outcome.report)
    kept = session.exec(select(RejectedSale.event_id, RejectedSale.reason, RejectedSale.row)).all()
    assert [(e, r, row["price"]) for e, r, row in kept] == [("e1", Reason.DUPLICATE_CONFLICT, 96.0)]

    ingest_listings(session, coll, [sale("l1", price=95.0)], NOW)
    for _ in range(2):
        report = ingest_listings(session, coll, [sale("l1", price=96.0), sale("l1", price=95.0)], NOW)
        assert (report.accepted, report.duplicate, report.rejected) == (0, 1, 1)
    kept = session.exec(select(RejectedListing.event_id, RejectedListing.row)).all()
    assert [(e, row["price"]) for e, row in kept] == [("l1", 96.0)]


def test_a_new_event_id_given_twice_with_other_content_keeps_the_first_and_refuses_the_second(sqlite_market):
    session, coll = sqlite_market
    first = ingest_store.ingest_sales(session, coll, [sale("n1", 95.0), sale("n1", 96.0), sale("n1", 95.0)], "t", 0.2)
    again = ingest_store.ingest_sales(session, coll, [sale("n1", 95.0), sale("n1", 96.0), sale("n1", 95.0)], "t", 0.2)
    assert (first.accepted, first.duplicate, first.rejected, first.rejected_kept_before) == (1, 1, 1, 0)
    assert (again.accepted, again.duplicate, again.rejected, again.rejected_kept_before) == (0, 2, 1, 1)
    assert first.reasons == again.reasons == {Reason.DUPLICATE_CONFLICT: 1}


def test_a_group_commit_judges_a_conflicting_twin_against_an_earlier_calls_event():
    """Call A stores e1 at 95; call B of the same batch sends e1 at 96, then at 95: a conflict and a
    duplicate, as B after A's commit would be told."""
    batches = [validate_batch(rows, {"1"}, FloorLookup({}), 0.2, NOW)
               for rows in ([sale(price=95.0)], [sale(price=96.0), sale(price=95.0)])]
    claims = first_claims(batches)
    settled = settle(batches, claims, {"e1"}, {"e1": batches[0].clean[0].content_hash})
    b = settled[1].report
    assert (b.accepted, b.duplicate, b.rejected) == (0, 1, 1)
    assert [r.row["price"] for r in settled[1].rejections] == [96.0]


# --- a card price answer: a field there but unreadable is refused, naming it ---

@pytest.mark.parametrize("card, names", [
    ({"priceHistory": [{"date": "2025-07-18", "market": 10.0}], "prices": {"market": 9.0}}, "priceHistory"),
    ({"priceHistory": "n/a"}, "priceHistory"),
    ({"priceHistory": False, "prices": {"market": 9.0}}, "priceHistory"),
    ({"priceHistory": "", "prices": {"market": 9.0}}, "priceHistory"),
    ({"priceHistory": 0, "prices": {"market": 9.0}}, "priceHistory"),
    ({"prices": [9.0]}, "prices"),
    ({"prices": "9.0"}, "prices"),
    ({"prices": {"market": 9.0, "lastUpdated": "yesterday"}}, "prices.lastUpdated"),
    ({"prices": {"market": 9.0, "lastUpdated": 1752912000}}, "prices.lastUpdated"),
])
def test_a_card_answer_field_of_the_wrong_kind_is_refused_naming_it(card, names):
    """A priceHistory given as a list was read past: the card's current price was stored instead,
    as of the day fetched, as was a price whose lastUpdated is no day."""
    rows, problems = rows_from_api("a", {"data": [card]}, TODAY)
    assert rows == [] and [p.reason for p in problems] == [PriceReason.MALFORMED_RESPONSE]
    assert problems[0].detail.startswith(names + " ") and problems[0].row["card_id"] == "a"


def test_an_empty_history_or_a_blank_update_time_is_none_given():
    for card in ({"priceHistory": [], "prices": {"market": 9.0}}, {"priceHistory": None, "prices": {"market": 9.0}},
                 {"prices": {"market": 9.0, "lastUpdated": ""}}):
        assert rows_from_api("a", {"data": [card]}, TODAY) == (
            [{"date": "2025-07-20", "card_id": "a", "market_price": 9.0}], [])


def test_a_refusal_says_what_is_wrong_with_the_number_it_was_given():
    """A JSON NaN card id was refused as "a number past a float's range", and a price "1_000" as
    "not a finite number": neither is what is wrong with them."""
    from models.json_input import loads

    card = validate_prices([loads('{"date": "2025-07-01", "card_id": NaN, "market_price": 1}')], {"a"}, TODAY)
    assert [r.detail for r in card.rejected] == ["card_id is NaN, not an id"]
    refused = sale_outcome(sale(price="1_000"))
    assert refused.reason == Reason.MALFORMED_PRICE and '"_"' in refused.detail and "finite" not in refused.detail
    assert "past a float's range" in validate_prices(
        [loads('{"date": "2025-07-01", "card_id": 1e400, "market_price": 1}')], {"a"}, TODAY).rejected[0].detail
