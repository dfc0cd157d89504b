"""Operator mistakes the CLI refuses whole, with why, storing nothing: a file of another kind or
without the columns its rows need, `seed` of a collection that has no bundled market, a train
that cannot start, a revoked token's name. (A file of its own: tests/integration/test_cli.py is
where the other commands' refusals are.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue.cli import app
from storage import scratch
from storage.db import session_scope
from storage.tables import Collection, Item, Listing, ModelVersion, RejectedListing, RejectedSale, Sale
from tests.conftest import PG_ADMIN_URL, TEST_DB

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
    asks = tmp_path / "asks-as-sales.csv"  # a name no other test's file has: rejections are kept by it
    asks.write_text("event_id,timestamp,item_id,price,expires_at,source\n"
                    "askx-1,2021-12-30T00:00:00Z,7804,3900,,opensea\n")
    result = runner.invoke(app, ["ingest", "sales", str(asks)])
    assert result.exit_code == 2, result.output
    assert ("asks-as-sales.csv not ingested: line 1: the header names expires_at, a column of listings and "
            "not of sales: a file of another kind? (`fairvalue ingest listings`)") in said(result)
    sales = tmp_path / "sold-as-listings.jsonl"
    sales.write_text('{"event_id": "soldx-1", "timestamp": "2021-12-30T00:00:00Z", "item_id": 7804, '
                     '"price": 3900, "seller": "0xa", "buyer": "0xb"}\n')
    result = runner.invoke(app, ["ingest", "listings", str(sales)])
    assert result.exit_code == 2 and "the first row names seller, buyer, columns of sales" in said(result), \
        result.output
    assert stored("file:asks-as-sales.csv", "askx-1") == stored("file:sold-as-listings.jsonl", "soldx-1") == \
        (0, 0, 0, 0)


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


def test_train_with_a_cutoff_before_every_sale_names_the_cutoff_and_the_first_sale(seeded):
    with session_scope() as session:
        versions = session.exec(select(func.count()).select_from(ModelVersion)).one()
    result = runner.invoke(app, ["train", "--cutoff", "2016-01-01"])
    assert result.exit_code == 1, result.output
    assert ("nothing trained: no sales before the cutoff 2016-01-01T00:00:00Z: the first stored sale is of "
            "2017-06-23") in said(result)
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(ModelVersion)).one() == versions


def test_train_into_a_bucket_that_does_not_exist_says_so_before_it_fits(seeded):
    """`fairvalue train` with FAIRVALUE_ARTIFACTS_URL naming a bucket never created fitted for a
    minute, then died with an ArtifactError traceback (the README's recipe never said to create it)."""
    with session_scope() as session:
        versions = session.exec(select(func.count()).select_from(ModelVersion)).one()
    result = _fairvalue("train", database_url=os.environ["FAIRVALUE_DATABASE_URL"],
                        FAIRVALUE_ARTIFACTS_URL="s3://never-created/artifacts")
    assert result.returncode == 1, result.stderr
    assert "the bucket 'never-created' of FAIRVALUE_ARTIFACTS_URL does not exist" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and result.stdout == ""
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(ModelVersion)).one() == versions


def _fairvalue(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fairvalue.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FAIRVALUE_DATABASE_URL": database_url, **env})


def test_cards_before_they_are_loaded_get_the_cards_advice_and_nothing_is_made(database, tmp_path):
    """On a database where the cards were never loaded: `seed` of cards (or of a slug with no
    files) failed with a FileNotFoundError traceback, `ingest sales` said to run `seed`, and a
    failed `train` left an empty cards collection that `status` then showed."""
    fresh = f"{TEST_DB}_nocards"
    scratch.create(PG_ADMIN_URL, fresh)
    try:
        url = database.rsplit("/", 1)[0] + "/" + fresh
        assert _fairvalue("db", "upgrade", database_url=url).returncode == 0
        seed_cards = _fairvalue("seed", database_url=url, FAIRVALUE_COLLECTION="cards")
        seed_nope = _fairvalue("seed", database_url=url, FAIRVALUE_COLLECTION="nope")
        sales = tmp_path / "sales.csv"
        sales.write_text("event_id,timestamp,punk_id,price_eth\ne1,2021-10-01T00:00:00Z,5,70\n")
        ingest = _fairvalue("ingest", "sales", str(sales), "--collection", "cards", database_url=url)
        train = _fairvalue("train", "--collection", "cards", database_url=url)
        status = _fairvalue("status", "--collection", "cards", database_url=url)
        made = _fairvalue("status", "--collection", "cryptopunks", database_url=url)
    finally:
        scratch.drop(PG_ADMIN_URL, fresh)
    for result in (seed_cards, seed_nope, ingest, train, status):
        assert "Traceback" not in result.stderr + result.stdout, result

    def one_line_of(result):  # a refusal is said on stderr; rich wraps it
        return " ".join(result.stderr.split())

    one_line = {name: one_line_of(r) for name, r in
                (("seed", seed_cards), ("ingest", ingest), ("train", train))}
    assert seed_cards.returncode == 1 and one_line["seed"] == (
        "nothing seeded: collection cards is daily-priced: load its cards with `fairvalue cards load` and their "
        "prices with `fairvalue ingest prices`")
    assert seed_nope.returncode == 1 and "unknown collection 'nope'" in seed_nope.stderr, seed_nope
    assert ingest.returncode == 2 and "fairvalue seed" not in one_line["ingest"]
    assert ("it takes daily prices (`fairvalue ingest prices`), not sales, once its cards are loaded "
            "(`fairvalue cards load`)") in one_line["ingest"]
    assert train.returncode == 1 and one_line["train"].startswith("nothing trained: no prices to train on: load "
                                                                 "its cards with `fairvalue cards load`")
    # train made nothing, and the refusal says what makes it (it read as a typo of the bundled name)
    assert status.returncode == 1 and one_line_of(status).startswith(
        "unknown collection 'cards': not set up yet; `fairvalue cards load` makes it"), status
    assert "unknown collection 'cryptopunks': not set up yet; `fairvalue seed`" in one_line_of(made)


def test_seed_of_a_stored_collection_without_bundled_files_says_so(database):
    with session_scope() as session:
        session.add(Collection(slug="cli-nofiles", name="cli-nofiles", kind="unique_items", currency="ETH"))
    result = _fairvalue("seed", database_url=database, FAIRVALUE_COLLECTION="cli-nofiles")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert "no bundled market to seed" in result.stderr and "punks.csv" in result.stderr, result.stderr
    with session_scope() as session:
        coll = session.exec(select(Collection).where(Collection.slug == "cli-nofiles")).one()
        assert session.exec(select(Item).where(Item.collection_id == coll.id)).first() is None


def test_a_revoked_tokens_name_is_refused_as_revoked(database, tokens_to_revoke):
    tokens_to_revoke.extend(["cli-gone", "cli-here"])  # revoked at teardown should an assert fail before the revokes
    assert runner.invoke(app, ["tokens", "create", "--name", "cli-gone"]).exit_code == 0
    assert runner.invoke(app, ["tokens", "revoke", "cli-gone"]).exit_code == 0
    again = runner.invoke(app, ["tokens", "create", "--name", "cli-gone"])
    text = " ".join(again.output.replace("│", " ").split())
    assert again.exit_code == 2 and "the token named 'cli-gone' was revoked on 20" in text, again.output
    assert "a revoked name is not reused" in text and "revoke it" not in text
    assert runner.invoke(app, ["tokens", "create", "--name", "cli-here"]).exit_code == 0
    active = runner.invoke(app, ["tokens", "create", "--name", "cli-here"])
    assert active.exit_code == 2 and "is active; to replace it" in " ".join(active.output.replace("│", " ").split())
    # No token left active: the operator API tests after this one expect none (test_operator_api.py).
    assert runner.invoke(app, ["tokens", "revoke", "cli-here"]).exit_code == 0
    # A refusal goes to stderr, as every command's does (it was printed on stdout).
    nothing = runner.invoke(app, ["tokens", "revoke", "cli-here"])
    assert nothing.exit_code == 1 and nothing.stdout == "" and "no active token named 'cli-here'" in nothing.stderr


def test_a_port_out_of_range_is_refused_not_wrapped(database):
    """`api --port 99999` said it ran on 99999 and listened on 34463 (99999 mod 65536)."""
    for command in ("api", "up"):
        refused = runner.invoke(app, [command, "--port", "99999"])
        said = " ".join(refused.output.replace("│", " ").split())
        assert refused.exit_code == 2 and "Invalid value for '--port': Input should be less than or equal to 65535" \
            in said, refused.output


def test_replay_and_backtest_read_the_collection_from_the_environment_as_from_the_option(database):
    """With FAIRVALUE_COLLECTION=cards and no --collection they took the cards for a market of sales
    ("the window holds no sale or listing event to score"), where --collection cards worked."""
    for command in ("replay", "backtest"):
        refused = _fairvalue(command, "--from", "2025-05-01", "--to", "2025-05-08", "--cadence", "30m",
                             database_url=database, FAIRVALUE_COLLECTION="cards")
        said = " ".join(refused.stderr.replace("│", " ").split())
        assert refused.returncode == 2 and "daily-priced collection" in said and "--cadence" in said, refused.stderr
