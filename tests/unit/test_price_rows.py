"""Price rows from files and from the price API: clean observations, rejections with reasons."""

from __future__ import annotations

from datetime import date

from models.price_rows import PriceReason, rows_from_api, validate_prices

TODAY = date(2025, 7, 20)
KNOWN = {"a", "b"}


def test_each_bad_row_is_kept_with_its_reason():
    rows = [
        {"date": "2025-07-01", "card_id": "a", "market_price": "12.5", "volume": "3"},
        {"date": "2025-07-01", "card_id": "a", "market_price": "12.5", "volume": "3"},  # same again
        {"date": "2025-07-01", "card_id": "a", "market_price": "13"},  # contradicts the first
        {"date": "07/01/2025", "card_id": "b", "market_price": "1"},
        {"date": "2025-08-01", "card_id": "b", "market_price": "1"},
        {"date": "2025-07-01", "card_id": "zzz", "market_price": "1"},
        {"date": "2025-07-01", "card_id": "b", "market_price": "N/A"},
        {"date": "2025-07-01", "card_id": "b", "market_price": "-2"},
        {"date": "2025-07-01", "card_id": "b", "market_price": "2", "volume": "1.5"},
        {"date": "2025-07-01", "card_id": "b"},
        {"day": "2025-07-02", "card": "b", "price": 2.25},
    ]
    batch = validate_prices(rows, KNOWN, TODAY)
    assert [(o.item_key, o.day, o.price, o.volume) for o in batch.clean] == [
        ("a", date(2025, 7, 1), 12.5, 3), ("b", date(2025, 7, 2), 2.25, None)]
    assert batch.repeated_in_batch == 1
    assert [r.reason for r in batch.rejected] == [
        PriceReason.CONFLICT_IN_BATCH, PriceReason.MALFORMED_DATE, PriceReason.FUTURE_DATE, PriceReason.UNKNOWN_ITEM,
        PriceReason.MALFORMED_PRICE, PriceReason.NON_POSITIVE_PRICE, PriceReason.MALFORMED_VOLUME,
        PriceReason.MISSING_FIELD]
    assert batch.rejected[0].row == rows[2] and "12.5" in batch.rejected[0].detail


def test_numbers_and_dates_past_any_market_are_refused_not_a_crash():
    rows = [
        {"date": "2025-07-01", "card_id": "a", "market_price": 10**400},  # an integer past float's range
        {"date": "2025-07-01", "card_id": "a", "market_price": "1e200"},
        {"date": "0001-01-01", "card_id": "a", "market_price": "1"},
        {"date": "2025-07-01", "card_id": "a", "market_price": "1", "volume": 10**400},
        {"date": "2025-07-01", "card_id": "a", "market_price": "1", "volume": "1e12"},  # past the INTEGER column
        {"date": "2025-07-01", "card_id": "a", "market_price": "1_000"},  # float() reads 1000
    ]
    batch = validate_prices(rows, KNOWN, TODAY)
    assert batch.clean == [] and [r.reason for r in batch.rejected] == [
        PriceReason.MALFORMED_PRICE, PriceReason.MALFORMED_PRICE, PriceReason.MALFORMED_DATE,
        PriceReason.MALFORMED_VOLUME, PriceReason.MALFORMED_VOLUME, PriceReason.MALFORMED_PRICE]


def test_api_answers_history_fallback_and_malformed():
    history = {"data": [{"tcgPlayerId": "1", "prices": {"market": 9.0},
                         "priceHistory": {"2025-07-18": 10.0, "2025-07-19": {"market": 11.0, "volume": 4}}}]}
    rows, problems = rows_from_api("a", history, TODAY)
    assert problems == [] and [r["market_price"] for r in rows] == [10.0, 11.0] and rows[1]["volume"] == 4
    rows, problems = rows_from_api("a", {"data": {"prices": {"market": 9.5, "lastUpdated": "2025-07-19T08:00:00Z"}}},
                                   TODAY)
    assert rows == [{"date": "2025-07-19", "card_id": "a", "market_price": 9.5}] and problems == []
    rows, problems = rows_from_api("a", {"data": [{"prices": {}}]}, TODAY)
    assert rows == [] and problems[0].reason == PriceReason.NO_PRICE
    rows, problems = rows_from_api("a", {"data": []}, TODAY)
    assert rows == [] and problems[0].reason == PriceReason.MALFORMED_RESPONSE


def test_the_same_price_twice_is_a_duplicate_whether_or_not_a_volume_is_given():
    """A repeated price row without a volume was refused as conflicting_price_in_batch; only a
    different price (or two different volumes) contradicts the file, and the row with a volume is kept."""
    rows = [
        {"date": "2025-07-01", "card_id": "a", "market_price": "2000"},
        {"date": "2025-07-01", "card_id": "a", "market_price": "2000.00", "volume": "3"},  # the one kept
        {"date": "2025-07-01", "card_id": "a", "market_price": "2000", "volume": ""},
        {"date": "2025-07-02", "card_id": "a", "market_price": "2010", "volume": "4"},
        {"date": "2025-07-02", "card_id": "a", "market_price": "2010"},
        {"date": "2025-07-03", "card_id": "b", "market_price": "5"},
        {"date": "2025-07-03", "card_id": "b", "market_price": "5"},
        {"date": "2025-07-03", "card_id": "b", "market_price": "5.5"},  # a different price: a conflict
        {"date": "2025-07-02", "card_id": "a", "market_price": "2010", "volume": "5"},  # another volume: too
    ]
    batch = validate_prices(rows, KNOWN, TODAY)
    assert [(o.item_key, o.day, o.price, o.volume) for o in batch.clean] == [
        ("a", date(2025, 7, 1), 2000.0, 3), ("a", date(2025, 7, 2), 2010.0, 4), ("b", date(2025, 7, 3), 5.0, None)]
    assert batch.repeated_in_batch == 4
    assert [(r.reason, r.row) for r in batch.rejected] == [
        (PriceReason.CONFLICT_IN_BATCH, rows[7]), (PriceReason.CONFLICT_IN_BATCH, rows[8])]
    assert "volume 4" in batch.rejected[1].detail


def test_a_date_with_text_after_it_is_refused_and_an_iso_time_names_its_day():
    """The first ten characters were read as the date, so "2025-07-04xyz" was stored as 07-04."""
    rows = [
        {"date": "2025-07-04xyz", "card_id": "a", "market_price": "1"},
        {"date": "2025-07-0", "card_id": "a", "market_price": "1"},
        {"date": "2025-07-03T12:00:00", "card_id": "a", "market_price": "1"},
        {"date": "2025-07-05T00:00:00Z", "card_id": "b", "market_price": "2"},
        {"date": "2025-07-06 12:00:00 UTC", "card_id": "b", "market_price": "2"},  # BigQuery's CSV time
        {"date": 20250707, "card_id": "b", "market_price": "2"},  # a number is no date
        {"date": "20250708", "card_id": "b", "market_price": "2"},
        {"date": "2025-02-30", "card_id": "b", "market_price": "2"},
    ]
    batch = validate_prices(rows, KNOWN, TODAY)
    assert [(o.item_key, o.day) for o in batch.clean] == [
        ("a", date(2025, 7, 3)), ("b", date(2025, 7, 5)), ("b", date(2025, 7, 6))]
    assert [r.reason for r in batch.rejected] == [PriceReason.MALFORMED_DATE] * 5
    assert batch.rejected[0].detail == "'2025-07-04xyz' is not a YYYY-MM-DD date"
