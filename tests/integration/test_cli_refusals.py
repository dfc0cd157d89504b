"""Operator mistakes the CLI refuses whole, with why, storing nothing: a file of another kind or
without the columns its rows need, `seed` of a collection that has no bundled market, a train
that cannot start, a revoked token's name. (A file of its own: tests/integration/test_cli.py is
where the other commands' refusals are.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue.cli import app
from storage.db import session_scope
from storage.tables import Collection, Listing, RejectedListing, RejectedSale, Sale

pytestmark = pytest.mark.integration
runner = CliRunner()


def said(result) -> str:
    """The output on one line (rich wraps it at the terminal's width)."""
    return " ".join(result.output.split())


def stored(origin: str, event_id: str) -> tuple[int, int, int, int]:
    """Sales and listings of `event_id`, and the rejections kept from the file `origin` names."""
    with session_scope() as session:
        return tuple(session.exec(select(func.count()).select_from(table).where(where)).one() for table, where in (
            (Sale, Sale.event_id == event_id), (Listing, Listing.event_id == event_id),
            (RejectedSale, RejectedSale.origin == origin), (RejectedListing, RejectedListing.origin == origin)))


def test_a_file_of_the_other_kind_is_refused_whole_and_stores_nothing(seeded, tmp_path):
    """An ask given to `ingest sales` became a stored sale, and a sale given to `ingest listings`
    an ask (exit 0 both); the JSON-document form was refused already."""
    asks = tmp_path / "asks.csv"
    asks.write_text("event_id,timestamp,item_id,price,expires_at,source\n"
                    "askx-1,2021-12-30T00:00:00Z,7804,3900,,opensea\n")
    result = runner.invoke(app, ["ingest", "sales", str(asks)])
    assert result.exit_code == 2, result.output
    assert ("asks.csv not ingested: line 1: the header names expires_at, a column of listings and not of sales: "
            "a file of another kind? (`fairvalue ingest listings`)") in said(result)
    sales = tmp_path / "sold.jsonl"
    sales.write_text('{"event_id": "soldx-1", "timestamp": "2021-12-30T00:00:00Z", "item_id": 7804, '
                     '"price": 3900, "seller": "0xa", "buyer": "0xb"}\n')
    result = runner.invoke(app, ["ingest", "listings", str(sales)])
    assert result.exit_code == 2 and "the first row names seller, buyer, columns of sales" in said(result), \
        result.output
    assert stored("file:asks.csv", "askx-1") == stored("file:sold.jsonl", "soldx-1") == (0, 0, 0, 0)


@pytest.mark.parametrize(("content", "why"), [
    ("event_id;timestamp;punk_id;price_eth\nx1;2021-12-30T00:00:00Z;7804;3900\n",
     "one column holding semicolons: the file must be comma-separated"),
    ("id,time,punk,price\nx1,2021-12-30T00:00:00Z,7804,3900\n",
     "the header names no column for item_key (item_key or item_id or punk_id), which every row of sales needs; "
     "its columns are: id, time, punk, price"),
    ("", "the file is empty"),
], ids=["semicolons", "no-item-column", "empty"])
def test_a_header_without_the_columns_rows_need_is_refused_whole(seeded, tmp_path, content, why):
    """Every row of such a file was kept as a missing_field rejection, exit 0."""
    path = tmp_path / "odd.csv"
    path.write_text(content)
    result = runner.invoke(app, ["ingest", "sales", str(path)])
    assert result.exit_code == 2 and why in said(result), result.output
    assert stored("file:odd.csv", "x1") == (0, 0, 0, 0)


def test_a_sales_file_given_as_prices_is_refused_whole(database, tmp_path):
    from storage.ingest import add_items

    with session_scope() as session:
        coll = Collection(slug="cli-priced", name="cli-priced", kind="daily_prices", currency="USD")
        session.add(coll)
        session.flush()
        add_items(session, coll, [{"item_key": "7804", "item_type": "card", "attributes": {}}])
    path = tmp_path / "sold.csv"
    path.write_text("event_id,timestamp,item_id,price,seller,buyer\ns1,2025-07-01T00:00:00Z,7804,3900,0xa,0xb\n")
    result = runner.invoke(app, ["ingest", "prices", str(path), "--collection", "cli-priced"])
    assert result.exit_code == 2 and "the header names no column for date (date or day)" in said(result), \
        result.output
    with session_scope() as session:
        assert session.exec(select(RejectedSale).where(RejectedSale.origin == "file:sold.csv")).first() is None
