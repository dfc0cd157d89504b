"""A sales file is read line by line: a line that cannot be read becomes one rejected row with
its reason, and every other line is read as usual."""

from __future__ import annotations

import pytest

from storage.bundled import UnreadableFile, read_listings_file, read_prices_file, read_sales_file

HEADER = b"event_id,timestamp,punk_id,price_eth,seller,buyer,source\n"
GOOD_1 = b"e1,2021-12-30T12:00:00Z,5,70,0xa,0xb,t\n"
GOOD_3 = b"e3,2021-12-30T13:00:00Z,6,71,0xa,0xb,t\n"


def rows_of(tmp_path, content: bytes, name: str = "sales.csv") -> list[dict]:
    path = tmp_path / name
    path.write_bytes(content)
    return list(read_sales_file(path))


def test_an_unclosed_quote_spoils_its_own_line_only(tmp_path):
    rows = rows_of(tmp_path, HEADER + GOOD_1 + b'e2,2021-12-30T12:30:00Z,5,70,"0xa1,0xb1,t\n' + GOOD_3)
    assert [r.get("event_id") for r in rows] == ["e1", None, "e3"]
    assert rows[1]["_line"] == 3 and "line 3" in rows[1]["_error"] and rows[1]["_raw"].startswith("e2,")


def test_a_wrong_number_of_fields_is_an_error_not_a_shifted_row(tmp_path):
    rows = rows_of(tmp_path, HEADER + b"e2,2021-12-30T12:30:00Z,5,70\n" + GOOD_3)
    assert "4 fields where the header has 7" in rows[0]["_error"] and rows[1]["event_id"] == "e3"


def test_bad_bytes_and_oversized_fields_are_rows_with_reasons(tmp_path):
    latin1 = b"e2,2021-12-30T12:30:00Z,5,70,0xa,0xb,caf\xe9\n"
    huge = b"e4,2021-12-30T12:40:00Z,5,70,0xa,0xb," + b"x" * 200_000 + b"\n"
    rows = rows_of(tmp_path, HEADER + GOOD_1 + latin1 + huge + GOOD_3)
    assert [r.get("event_id") for r in rows] == ["e1", None, None, "e3"]
    assert "not UTF-8" in rows[1]["_error"] and "caf\ufffd" in rows[1]["_raw"]
    assert "field larger than field limit" in rows[2]["_error"] and len(rows[2]["_raw"]) == 2000


def test_a_byte_order_mark_and_crlf_are_read_as_plain_text(tmp_path):
    rows = rows_of(tmp_path, b"\xef\xbb\xbf" + (HEADER + GOOD_1).replace(b"\n", b"\r\n"))
    assert rows == [{"event_id": "e1", "timestamp": "2021-12-30T12:00:00Z", "punk_id": "5", "price_eth": "70",
                     "seller": "0xa", "buyer": "0xb", "source": "t"}]
    jsonl = rows_of(tmp_path, b'\xef\xbb\xbf{"event_id": "j1"}\n\n[1]\n', "sales.jsonl")
    assert jsonl[0] == {"event_id": "j1"} and "JSON object" in jsonl[1]["_error"]


def test_json_past_pythons_limits_is_a_row_with_its_reason(tmp_path):
    lines = b'{"price": ' + b"9" * 5000 + b"}\n" + b"[" * 100_000 + b"\n" + b'{"event_id": "j2"}\n'
    rows = rows_of(tmp_path, lines, "prices.jsonl")
    assert "cannot be read" in rows[0]["_error"] and "line 2: the line is" in rows[1]["_error"]
    assert rows[2] == {"event_id": "j2"}


def test_json_the_webhook_refuses_is_a_row_with_its_reason_in_a_file_too(tmp_path):
    """models.json_input reads both: a lone surrogate (no database stores it), nesting past 32
    levels (it crashed keeping the row) and a key named twice each spoil their own line only."""
    lines = [b'{"event_id": "s1", "seller": "\\ud800"}', b'{"event_id": ' + b"[" * 40 + b"]" * 40 + b"}",
             b'{"event_id": "d1", "price": 1, "price": 1000}', b'{"event_id": "j3"}']
    rows = rows_of(tmp_path, b"\n".join(lines) + b"\n", "sales.jsonl")
    assert "lone UTF-16 surrogate" in rows[0]["_error"] and "deeper than 32" in rows[1]["_error"]
    assert "names the key 'price' twice" in rows[2]["_error"] and rows[3] == {"event_id": "j3"}
    assert [r.get("_line") for r in rows] == [1, 2, 3, None]


def test_a_json_file_may_hold_one_document(tmp_path):
    sales = b'[{"event_id": "a1"}, 7, {"event_id": "a2"}]'
    rows = rows_of(tmp_path, sales, "sales.json")
    assert rows[0] == {"event_id": "a1"} and rows[2] == {"event_id": "a2"}
    assert rows[1]["_raw"] == "7" and "entry 2 of the array" in rows[1]["_error"]
    assert rows_of(tmp_path, b'{"sales": [{"event_id": "b1"}]}', "sales.json") == [{"event_id": "b1"}]
    assert rows_of(tmp_path, b'{"event_id": "c1"}\n{"event_id": "c2"}\n', "sales.json") == [
        {"event_id": "c1"}, {"event_id": "c2"}]  # JSON lines, as before
    with pytest.raises(UnreadableFile, match="one JSON document that cannot be read"):
        rows_of(tmp_path, b'[{"event_id": "a1"},\n{"event_id": ', "sales.json")
    # A pretty-printed document with one bad sale in it: refused whole, not read line by line
    # (where the lone last sale, a whole JSON value on its own line, was taken and the rest refused).
    pretty = b'{"sales": [\n {"event_id": "a1", "price": 1, "price": 2},\n {"event_id": "a2", "price": 3}\n]}'
    with pytest.raises(UnreadableFile, match="names the key 'price' twice"):
        rows_of(tmp_path, pretty, "sales.json")
    # JSON lines with a bad line: that line alone is refused.
    lines = rows_of(tmp_path, b'{"event_id": "c1"}\n{"event_id": "c2", "price": 1, "price": 2}\n', "sales.json")
    assert lines[0] == {"event_id": "c1"} and "twice" in lines[1]["_error"]


def test_a_header_that_cannot_be_read_refuses_the_whole_file(tmp_path):
    with pytest.raises(UnreadableFile, match="line 1: the header cannot be read"):
        rows_of(tmp_path, b'"event_id,timestamp\ne1,2021\n')
    utf16 = (HEADER + GOOD_1).decode().encode("utf-16")  # a spreadsheet's "Unicode text"
    with pytest.raises(UnreadableFile, match="line 1: the header cannot be read .not UTF-8"):
        rows_of(tmp_path, utf16)


def test_a_listings_file_reads_an_empty_price_or_expiry_cell_as_null(tmp_path):
    """A CSV has no null: an empty price cell is a withdrawal, an empty expiry none; in JSON lines a
    missing price stays missing (refused), so the two are never confused there."""
    path = tmp_path / "asks.csv"
    path.write_bytes(b"event_id,timestamp,punk_id,price,expires_at,source\n"
                     b"l1,2024-01-05T10:00:00Z,1,90,,opensea\nl2,2024-01-06T10:00:00Z,1, ,,opensea\n"
                     b'l3,2024-01-06T10:00:00Z,2,80,2024-02-01T00:00:00Z,\nl4,"2024\n')
    rows = list(read_listings_file(path))
    assert rows[0] == {"event_id": "l1", "timestamp": "2024-01-05T10:00:00Z", "punk_id": "1", "price": "90",
                       "expires_at": None, "source": "opensea"}
    assert rows[1]["price"] is None and rows[2]["source"] == "" and rows[2]["expires_at"] == "2024-02-01T00:00:00Z"
    assert "_error" in rows[3] and rows[3]["_raw"] == 'l4,"2024'
    lines = tmp_path / "asks.jsonl"
    lines.write_bytes(b'{"event_id": "j1", "price": null}\n{"event_id": "j2", "price": ""}\n')
    assert list(read_listings_file(lines)) == [{"event_id": "j1", "price": None},
                                                                {"event_id": "j2", "price": ""}]
    document = tmp_path / "asks.json"
    document.write_bytes(b'{"listings": [{"event_id": "d1"}, {"event_id": "d2"}]}')
    assert [r["event_id"] for r in read_listings_file(document)] == ["d1", "d2"]
    document.write_bytes(b"7")
    with pytest.raises(UnreadableFile, match='nor {"listings": ...'):
        list(read_listings_file(document))
    document.write_bytes(b'{"sales": [{"event_id": "s1"}]}')  # a sales file given as listings: refused whole
    with pytest.raises(UnreadableFile, match="wraps its rows as 'sales', not 'listings'"):
        list(read_listings_file(document))
    both = tmp_path / "both.csv"  # an empty price_eth beside a price is not given; both empty withdraw
    both.write_bytes(b"event_id,timestamp,punk_id,price,price_eth\nb1,2024-01-05T10:00:00Z,1,90,\n"
                     b"b2,2024-01-05T10:00:00Z,1,,\n")
    assert list(read_listings_file(both)) == [
        {"event_id": "b1", "timestamp": "2024-01-05T10:00:00Z", "punk_id": "1", "price": "90"},
        {"event_id": "b2", "timestamp": "2024-01-05T10:00:00Z", "punk_id": "1", "price": None, "price_eth": None}]


def test_a_file_of_the_other_kind_is_refused_whole(tmp_path):
    """A listings CSV given as sales stored each ask as a sale, and a sales CSV given as listings
    each sale as an ask: a header naming a column only the other kind has (expires_at; seller,
    buyer) refuses the file, as a JSON document wrapping its rows as the other kind is refused.
    In JSON rows the first row decides; a later row naming such a key is kept as a rejection."""
    asks = b"event_id,timestamp,item_id,price,expires_at,source\naskx-1,2021-12-30T00:00:00Z,7804,3900,,opensea\n"
    with pytest.raises(UnreadableFile, match="line 1: the header names expires_at, a column of listings and not of "
                                             r"sales: a file of another kind\? \(`fairvalue ingest listings`\)"):
        rows_of(tmp_path, asks)
    sales = tmp_path / "sales.csv"
    sales.write_bytes(HEADER + GOOD_1)
    with pytest.raises(UnreadableFile, match="the header names seller, buyer, columns of sales and not of listings"):
        list(read_listings_file(sales))
    ask = b'{"event_id": "a1", "timestamp": "2021-12-30T00:00:00Z", "item_id": 1, "price": 9, "expires_at": null}'
    sale = b'{"event_id": "s1", "timestamp": "2021-12-30T00:00:00Z", "item_id": 1, "price": 9}'
    with pytest.raises(UnreadableFile, match="the first row names expires_at"):
        rows_of(tmp_path, ask + b"\n" + sale + b"\n", "sales.jsonl")
    with pytest.raises(UnreadableFile, match="the first row names expires_at"):
        rows_of(tmp_path, b"[" + ask + b"]", "sales.json")
    mixed = rows_of(tmp_path, sale + b"\n" + ask + b"\n", "sales.jsonl")
    assert mixed[0]["event_id"] == "s1" and "_error" not in mixed[0]
    assert mixed[1]["event_id"] == "a1" and mixed[1]["_error"].startswith("the row names expires_at")


def test_a_header_naming_a_column_twice_is_refused_whole(tmp_path):
    """A row would keep the last of the two cells (price_eth 4000, not 1), and nothing says which
    the sender meant; a JSON row naming a key twice is refused the same way."""
    with pytest.raises(UnreadableFile, match="line 1: the header names 'price_eth' twice"):
        rows_of(tmp_path, b"event_id,timestamp,punk_id,price_eth, price_eth\nx,2021-12-30T00:00:00Z,7804,1,4000\n")


def test_a_header_without_a_column_every_row_needs_is_refused_whole(tmp_path):
    """Every row of such a file was kept as a `missing_field` rejection and the command said 0 new
    sales, exit 0. The error names the missing fields with the names they go by and the header's."""
    with pytest.raises(UnreadableFile, match=r"no column for item_key \(item_key or item_id or punk_id\), which "
                                             "every row of sales needs; its columns are: id, time, punk, price$"):
        rows_of(tmp_path, b"id,time,punk,price\nx,2021-12-30T00:00:00Z,7804,3900\n")
    with pytest.raises(UnreadableFile, match="no column for event_id .*; timestamp .*; item_key .*; price .*"
                                             "one column holding semicolons: the file must be comma-separated"):
        rows_of(tmp_path, b"event_id;timestamp;punk_id;price_eth\nx;2021-12-30T00:00:00Z;7804;3900\n")
    with pytest.raises(UnreadableFile, match="one column holding tabs"):
        rows_of(tmp_path, b"event_id\ttimestamp\tpunk_id\tprice_eth\n")
    listings = tmp_path / "asks.csv"
    listings.write_bytes(b"event_id,timestamp,punk_id,expires_at\nl1,2024-01-05T10:00:00Z,1,\n")
    with pytest.raises(UnreadableFile, match=r"no column for price \(price or price_eth\), which every row of list"):
        list(read_listings_file(listings))
    prices = tmp_path / "prices.csv"  # a sales file given to `ingest prices`
    prices.write_bytes(HEADER + GOOD_1)
    with pytest.raises(UnreadableFile, match=r"no column for date \(date or day\); card_id .*every row of prices"):
        list(read_prices_file(prices))
    # The columns are there and a row lacks a value: that row alone is refused, by validation.
    rows = rows_of(tmp_path, HEADER + b"e2,,5,70,0xa,0xb,t\n" + GOOD_3)
    assert rows[0]["timestamp"] == "" and rows[1]["event_id"] == "e3"


@pytest.mark.parametrize("name", ["sales.csv", "sales.jsonl", "sales.json"])
def test_an_empty_file_is_refused_whatever_its_suffix(tmp_path, name):
    """An empty `.json` was refused ("not valid JSON") and an empty `.csv` read as 0 rows, exit 0."""
    for content in (b"", b"\n \n", b"\xef\xbb\xbf\n"):
        with pytest.raises(UnreadableFile, match="^the file is empty$"):
            rows_of(tmp_path, content, name)


@pytest.mark.parametrize(("name", "content"), [("sales.csv", HEADER), ("sales.json", b"[]"),
                                               ("sales.json", b'{"sales": []}')])
def test_a_file_without_a_row_is_refused_too(tmp_path, name, content):
    """A header alone, or an empty JSON list, read as 0 rows: an all-zero report and exit 0."""
    with pytest.raises(UnreadableFile, match="^the file holds no row of sales: a header alone, or an empty list$"):
        rows_of(tmp_path, content, name)


def test_a_json_row_naming_a_key_its_kind_is_not_read_by_is_kept_refused(tmp_path):
    """A listing's `expires` for `expires_at` was read with that key ignored, so the ask stayed
    open for ever. A JSON row is held to the keys its webhook takes (the aliases included) and one
    naming another is kept as a rejection saying which, never stored or dropped unsaid. A CSV's
    extra columns are still read past: an export carries them."""
    from datetime import UTC, datetime

    from models.listings import validate_listing
    from models.validation import Reason

    asks = tmp_path / "asks.jsonl"
    asks.write_bytes(b'{"event_id": "x1", "timestamp": "2024-01-05T10:00:00Z", "item_id": "1", "price": 90, '
                     b'"expires": "2024-02-01T00:00:00Z"}\n'
                     b'{"id": "x2", "ts": "2024-01-05T10:00:00Z", "punk_id": "1", "price_eth": 90, '
                     b'"expires_at": "2024-02-01T00:00:00Z", "source": "opensea"}\n')
    misspelled, aliased = read_listings_file(asks)
    assert misspelled["_error"] == ("unknown key 'expires' (did you mean 'expires_at'?) in the row; it takes "
                                    "event_id, id, timestamp, ts, time, item_key, item_id, punk_id, price, "
                                    "price_eth, source and expires_at")
    assert misspelled["expires"] == "2024-02-01T00:00:00Z"  # kept as it came
    refused = validate_listing(misspelled, {"1"}, datetime(2024, 3, 1, tzinfo=UTC))
    assert (refused.reason, refused.detail) == (Reason.MALFORMED_ROW, misspelled["_error"])
    assert "_error" not in aliased
    assert validate_listing(aliased, {"1"}, datetime(2024, 3, 1, tzinfo=UTC)).expires_at == datetime(
        2024, 2, 1, tzinfo=UTC)
    document = tmp_path / "asks.json"  # one document is held to the same keys
    document.write_bytes(b'{"listings": [{"event_id": "d1", "price": 1, "expiry": null}]}')
    assert "unknown key 'expiry'" in next(read_listings_file(document))["_error"]

    sales = rows_of(tmp_path, b'{"event_id": "s1", "price": 1, "time_precision": "hour", "seller": "0xa"}\n'
                              b'{"event_id": "s2", "price": 1, "currency": "USD"}\n', "sales.jsonl")
    assert "_error" not in sales[0] and sales[1]["_error"].startswith("unknown key 'currency' in the row; it takes")
    extra = rows_of(tmp_path, HEADER.replace(b"\n", b",tx_hash\n") + GOOD_1.replace(b"\n", b",0xf\n"))
    assert extra[0]["tx_hash"] == "0xf" and "_error" not in extra[0]
