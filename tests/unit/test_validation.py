from datetime import UTC, date, datetime

import pytest

from models.validation import FloorLookup, Reason, Rejection, validate_batch, validate_row

NOW = datetime(2022, 1, 1, tzinfo=UTC)
ITEMS = {"1", "2", "7804"}
FLOORS = FloorLookup({date(2021, 12, 1): 60.0, date(2021, 12, 10): 70.0})


def row(**overrides):
    base = {"event_id": "e1", "timestamp": "2021-12-05T10:00:00Z", "punk_id": "1", "price_eth": "65",
            "seller": "0xA", "buyer": "0x0000000000000000000000000000000000000000", "source": "x"}
    base.update(overrides)
    return base


def check(r):
    return validate_row(r, ITEMS, FLOORS, 0.2, NOW)


def test_clean_row_is_normalised():
    sale = check(row())
    assert sale.item_key == "1" and sale.price == 65.0
    assert sale.ts == datetime(2021, 12, 5, 10, tzinfo=UTC)
    assert sale.seller == "0xa"  # addresses compare case-insensitively


def test_parties_are_stripped_as_a_spaced_csv_writes_them():
    spaced = check(row(seller=" 0xA ", buyer=" 0xB", source=" x"))
    assert (spaced.seller, spaced.buyer, spaced.source) == ("0xa", "0xb", "x")
    assert spaced.content_hash == check(row(seller="0xA", buyer="0xB")).content_hash  # a duplicate, not a conflict
    assert check(row(seller=" ", buyer=" ")).seller == ""  # unknown parties, never a self-trade


def test_a_refused_row_names_its_event_as_the_stored_sale_is_named():
    """The reports leave out a refusal of an event that is stored as a sale after all, by its id:
    a spaced CSV's " e2" (stored as "e2") was reported both scored and refused."""
    spaced = check(row(event_id=" e2 ", price_eth="-1"))
    assert isinstance(spaced, Rejection) and spaced.event_id == "e2" == check(row(event_id=" e2 ")).event_id
    assert check(row(event_id=7.0, price_eth="-1")).event_id == "7" == check(row(event_id=7.0)).event_id
    assert check(row(event_id="  ", price_eth="-1")).event_id is None


def test_an_empty_cell_gives_way_to_the_same_field_under_another_name():
    """A file with both price and price_eth columns: the row's empty price cell was read as its
    price, and the row refused as missing one."""
    sale = check(row(price="", price_eth="65"))
    assert not isinstance(sale, Rejection) and sale.price == 65.0
    assert check(row(price=" ", price_eth="")).reason == Reason.MISSING_FIELD


def test_accepted_bid_with_zero_buyer_is_a_valid_sale():
    assert not isinstance(check(row()), Rejection)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"price_eth": "0"}, Reason.NON_POSITIVE_PRICE),
        ({"price_eth": "-3"}, Reason.NON_POSITIVE_PRICE),
        ({"price_eth": "abc"}, Reason.MALFORMED_PRICE),
        ({"price_eth": "nan"}, Reason.MALFORMED_PRICE),
        ({"price_eth": ""}, Reason.MISSING_FIELD),
        ({"punk_id": "10001"}, Reason.UNKNOWN_ITEM),
        ({"timestamp": "2021-13-45T00:00:00Z"}, Reason.MALFORMED_TIMESTAMP),
        ({"timestamp": "2030-01-01T00:00:00Z"}, Reason.FUTURE_TIMESTAMP),
        ({"price_eth": "11.9"}, Reason.BELOW_FLOOR_FRACTION),  # 0.2 x floor 60 = 12
        ({"event_id": None}, Reason.MISSING_FIELD),
        ({"event_id": "   "}, Reason.MISSING_FIELD),  # blank ids would all collide as ""
        ({"price_eth": 10**400}, Reason.MALFORMED_PRICE),  # an integer past float's range
        ({"price_eth": "1e200"}, Reason.MALFORMED_PRICE),  # finite, but no sale price
        ({"price_eth": "1_000"}, Reason.MALFORMED_PRICE),  # float() would read 1000
        ({"timestamp": "0001-01-01T00:00:00Z"}, Reason.MALFORMED_TIMESTAMP),  # before the models' time range
        ({"timestamp": "1969-12-31T23:59:59Z"}, Reason.MALFORMED_TIMESTAMP),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, Reason.MALFORMED_TIMESTAMP),  # overflows into UTC
        ({"timestamp": "9999-12-31T23:00:00-05:00"}, Reason.MALFORMED_TIMESTAMP),
        ({"timestamp": 20211205}, Reason.MALFORMED_TIMESTAMP),  # a number: fromisoformat read it as a date
        # Two names of one field that disagree: which one was meant? (_pick took the first)
        ({"price": "1", "price_eth": "1000"}, Reason.MALFORMED_ROW),
        ({"item_id": "2", "punk_id": "1"}, Reason.MALFORMED_ROW),
        ({"item_id": "9007199254740993", "punk_id": "9007199254740992"}, Reason.MALFORMED_ROW),  # one float
        # A boolean is no text: str() made true the event "True", false an empty party.
        ({"event_id": True}, Reason.MALFORMED_ROW),
        ({"seller": False}, Reason.MALFORMED_ROW),
        # JSON's 1e400 reads as inf: every such id was the event "inf", and 2e400 its conflict.
        ({"event_id": float("inf")}, Reason.MALFORMED_ROW),
        ({"event_id": float("-inf")}, Reason.MALFORMED_ROW),
        ({"seller": float("inf")}, Reason.MALFORMED_ROW),
    ],
)
def test_bad_rows_are_rejected_with_reason(overrides, reason):
    outcome = check(row(**overrides))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason
    assert outcome.row["price_eth"] == row(**overrides)["price_eth"]  # kept as it came


def test_floor_check_uses_the_latest_floor_of_an_earlier_day():
    # FLOORS: 60 from 2021-12-01, 70 from 2021-12-10; 0.2 x 60 = 12, 0.2 x 70 = 14.
    # A sale of 2021-12-10 is checked against 60, not its own day's 70.
    assert not isinstance(check(row(timestamp="2021-12-10T23:00:00Z", price_eth="12.5")), Rejection)
    assert check(row(timestamp="2021-12-11T00:00:00Z", price_eth="12.5")).reason == Reason.BELOW_FLOOR_FRACTION
    assert check(row(timestamp="2021-12-10T00:00:00Z", price_eth="11.9")).reason == Reason.BELOW_FLOOR_FRACTION
    # Before any known floor, no floor check applies.
    assert not isinstance(check(row(timestamp="2017-07-01T00:00:00Z", price_eth="0.01")), Rejection)


def test_a_floor_that_spikes_over_the_sales_for_days_is_held_to_three_times_its_low():
    # The column of 2020-12-01..10: ~3 ETH, then odd sales took it to 36.99 in five days; the
    # sales of 12-11 went for 1.0-3.5 ETH, and 0.2 x 36.99 = 7.4 refused them all.
    column = [3.0, 3.4, 2.9, 2.6, 3.15, 11.6, 20.0, 20.0, 28.5, 36.99]
    spike = FloorLookup({date(2020, 12, 1 + i): floor for i, floor in enumerate(column)})
    assert spike.before(date(2020, 12, 11)) == pytest.approx(3 * 2.6)  # the lowest of 12-04 .. 12-10
    on_the_11th = [validate_row(row(timestamp="2020-12-11T12:00:00Z", price_eth=p), ITEMS, spike, 0.2, NOW)
                   for p in ("1.0", "2.5")]
    assert on_the_11th[0].reason == Reason.BELOW_FLOOR_FRACTION and not isinstance(on_the_11th[1], Rejection)
    # A level the column keeps is the floor checked against once the week's low is over a third of it.
    held = FloorLookup({**{date(2020, 12, 1 + i): floor for i, floor in enumerate(column)},
                        **{date(2020, 12, 11 + i): 36.99 for i in range(7)}})
    assert held.before(date(2020, 12, 13)) == pytest.approx(3 * 11.6) and held.before(date(2020, 12, 14)) == 36.99


def test_naive_timestamp_is_read_as_utc():
    assert check(row(timestamp="2021-12-05 10:00:00")).ts == datetime(2021, 12, 5, 10, tzinfo=UTC)


def test_batch_repeats_count_once_and_conflicts_are_rejected():
    batch = validate_batch([row(), row(), row(price_eth="66")], ITEMS, FLOORS, 0.2, NOW)
    assert len(batch.clean) == 1
    assert batch.repeated_in_batch == 1
    assert [r.reason for r in batch.rejected] == [Reason.DUPLICATE_CONFLICT]


def test_content_hash_ignores_the_reporting_source():
    a, b = check(row(source="a")), check(row(source="b"))
    assert a.content_hash == b.content_hash
    assert check(row(price_eth="66")).content_hash != a.content_hash


@pytest.mark.parametrize(
    "overrides, detail",
    [
        ({"event_id": "a\x00b"}, "event_id contains a NUL character"),
        ({"seller": "0x\x00"}, "seller contains a NUL character"),
        ({"event_id": "e" * 201}, "event id longer than 200"),
        ({"event_id": 1e250}, "event id longer than 200 characters once read"),  # 251 digits as a key
        ({"seller": "0x" + "a" * 4000}, "seller longer than 200"),  # overflowed PostgreSQL's index on the parties
        ({"buyer": "b" * 201}, "buyer longer than 200"),
        ({"source": "s" * 201}, "source longer than 200"),
        ({"event_id": ["e1"]}, "event_id must be text or a number, not list"),
        ({"punk_id": {"id": 1}}, "item_key must be text or a number, not dict"),
    ],
)
def test_text_no_database_can_store_is_refused(overrides, detail):
    """NUL bytes, over-long text and nested values would fail (or be cut) in the database: refused with why."""
    rejected = check(row(**overrides))
    assert isinstance(rejected, Rejection) and rejected.reason == Reason.MALFORMED_ROW
    assert detail in rejected.detail


def test_time_precision_is_declared_or_read_from_the_source():
    """A row may say how precisely its time is known; one that does not gets its source's
    (models.times.HOUR_PRECISION_SOURCES); anything else is refused with why."""
    assert check(row()).time_precision == "second"
    assert check(row(source="cryptopunks-vis")).time_precision == "hour"  # minutes hold the month there
    assert check(row(time_precision=" Hour ")).time_precision == "hour"
    assert check(row(source="cryptopunks-vis", time_precision="second")).time_precision == "second"
    assert check(row(time_precision="")).time_precision == "second"  # a blank CSV cell declares nothing
    refused = check(row(time_precision="minute"))
    assert isinstance(refused, Rejection) and refused.reason == Reason.MALFORMED_TIME_PRECISION
    assert "'minute' is none of second, hour" in refused.detail
    assert check(row(time_precision="hour")).content_hash == check(row()).content_hash  # a duplicate, not a conflict


def test_aliases_that_agree_and_numeric_ids_read_as_one_value():
    same = check(row(price="65.0", punk_id=1, item_id="1"))  # the same price and item, spelt twice
    assert (same.price, same.item_key) == (65.0, "1")
    assert check(row(event_id=7.0)).event_id == check(row(event_id="7")).event_id == "7"


def test_a_sale_before_the_collection_could_trade_is_refused():
    """A feed's broken date (a punk sold in 1971, or in January 2017) is no sale: refused with
    its own reason where the collection's first day is known, and kept whole."""
    first = date(2017, 6, 22)
    for when in ("1971-01-01T00:00:00Z", "2017-06-21T23:59:59Z"):
        outcome = validate_row(row(timestamp=when), ITEMS, FloorLookup({}), 0.2, NOW, first)
        assert isinstance(outcome, Rejection) and outcome.reason == Reason.BEFORE_COLLECTION, when
        assert "first day of trading, 2017-06-22" in outcome.detail and outcome.row["timestamp"] == when
    assert not isinstance(validate_row(row(timestamp="2017-06-22T00:00:00Z"), ITEMS, FloorLookup({}), 0.2, NOW,
                                       first), Rejection)
    assert not isinstance(validate_row(row(timestamp="1971-01-01T00:00:00Z"), ITEMS, FloorLookup({}), 0.2, NOW),
                          Rejection)  # a collection whose first day is not known: only the epoch bounds it


def test_the_look_ups_read_a_field_as_validation_does():
    """item_key_of and sale_day_of (what a webhook looks up before validating) and a refusal's
    event id read an empty value as giving way to another name's, as validate_row does."""
    from models.validation import item_key_of, sale_day_of

    given = {"event_id": "", "id": "e9", "timestamp": " ", "ts": "2021-01-02T12:00:00Z", "item_key": "",
             "punk_id": "7", "price": 0}
    refused = validate_row(given, {"7"}, FloorLookup({}), 0.2, NOW)
    assert (item_key_of(given), sale_day_of(given)) == ("7", date(2021, 1, 2))
    assert (refused.reason, refused.event_id) == (Reason.NON_POSITIVE_PRICE, "e9")
