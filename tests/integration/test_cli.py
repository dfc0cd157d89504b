"""Operator commands against PostgreSQL and S3."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue.cli import app
from storage import scratch
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import Collection, Listing, RejectedListing, RejectedSale, Sale
from tests.conftest import PG_ADMIN_URL, TEST_DB

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_first_seed_loads_the_bundled_market(seeded):
    report = seeded["seed"]
    assert report.new_items == 10_000
    assert report.sales.accepted + report.sales.rejected == 17_334
    assert report.sales.reasons["non_positive_price"] > 0
    assert report.sales.reasons["missing_field"] == 9


def test_seed_again_adds_nothing_and_lists_rejections_by_reason(seeded):
    with session_scope() as session:
        sales_before = session.exec(select(func.count()).select_from(Sale)).one()
        rejected_before = session.exec(select(func.count()).select_from(RejectedSale)).one()

    result = runner.invoke(app, ["seed"])

    assert result.exit_code == 0, result.output
    assert "items: 0 new; market days: 0 new or changed" in result.output
    assert "│ new sales                        │     0 │" in result.output
    assert "rejected: non_positive_price" in result.output
    kept = f"│   rejected, kept already         │ {seeded['seed'].sales.rejected:>5} │"
    assert kept in result.output, result.output  # every refused row was kept by the first seed
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Sale)).one() == sales_before
        assert session.exec(select(func.count()).select_from(RejectedSale)).one() == rejected_before
    # --collection as every per-collection command takes it: the named one is seeded, not the default.
    named = runner.invoke(app, ["seed", "--collection", "cryptopunks"])
    assert named.exit_code == 0 and "items: 0 new" in named.output, named.output
    cards = runner.invoke(app, ["seed", "--collection", "cards"])
    assert cards.exit_code == 1 and "collection cards is daily-priced" in cards.output, cards.output


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_ingest_file_with_bad_rows(seeded, tmp_path):
    path = tmp_path / "backfill.jsonl"
    path.write_text(
        '{"event_id": "bf-1", "timestamp": "2021-12-30T10:00:00Z", "punk_id": 10, "price_eth": 70}\n'
        "this is not json\n"
        '{"event_id": "bf-2", "timestamp": "2021-12-30T11:00:00Z", "punk_id": 11, "price_eth": -1}\n'
    )

    result = runner.invoke(app, ["ingest", "sales", str(path)])

    assert result.exit_code == 0, result.output
    assert "rejected: malformed_row" in result.output  # the unparseable line, kept whole
    assert "rejected: non_positive_price" in result.output
    with session_scope() as session:
        kept = session.exec(select(RejectedSale).where(RejectedSale.origin == "file:backfill.jsonl")).all()
    assert {r.reason for r in kept} == {"malformed_row", "non_positive_price"}
    assert any("this is not json" in str(r.row) for r in kept)


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_ingest_listings_stores_each_event_once_and_keeps_bad_rows(seeded, tmp_path):
    """A listings backfill: an offer (open for a second, so no other test's nowcast reads it), a
    withdrawal (the empty price cell), an unknown item and an unreadable line; the same file again
    stores nothing and keeps no second copy of the rejections."""
    path = tmp_path / "asks.csv"
    path.write_text("event_id,timestamp,punk_id,price,expires_at,source\n"
                    "ask-1,2021-12-30T13:00:00Z,12,50,2021-12-30T13:00:01Z,cli\n"
                    "ask-2,2021-12-30T13:00:00Z,13,,,cli\n"
                    "ask-3,2021-12-30T13:00:00Z,10001,60,,cli\n"
                    'ask-4,"2021\n')

    first = runner.invoke(app, ["ingest", "listings", str(path)])
    again = runner.invoke(app, ["ingest", "listings", str(path)])

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert "│ new listings" in first.output and "rejected: unknown_item" in first.output
    assert "rejected: malformed_row" in first.output
    assert "rejected, kept already" in again.output
    with session_scope() as session:
        stored = session.exec(select(Listing.event_id, Listing.price, Listing.source)
                              .where(Listing.event_id.in_(["ask-1", "ask-2"])).order_by(Listing.event_id)).all()
        kept = session.exec(select(RejectedListing.reason).where(RejectedListing.origin == "file:asks.csv")).all()
    assert stored == [("ask-1", 50.0, "cli"), ("ask-2", None, "cli")]
    assert sorted(kept) == ["malformed_row", "unknown_item"]
    refused = runner.invoke(app, ["ingest", "listings", str(path), "--collection", "no-such-market"])
    assert refused.exit_code == 1 and "unknown collection" in refused.output, refused.output


def test_status_names_champion_and_snapshot(seeded):
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "10000 items" in result.output and "listing events" in result.output
    assert "thinned by retention (past 14 days)" in " ".join(result.output.split())  # rich wraps at 80
    assert "champion: v1" in result.output
    assert "published snapshot:" in result.output
    assert "kept out of the model, wash_round_trip:" in result.output  # the bundled sales hold some
    assert "paused loops: none" in result.output


def test_status_names_paused_loops_and_rejected_listing_events(seeded, tmp_path):
    """Neither showed anywhere: a paused loop explains a value that stopped moving, and rejected
    listing rows were kept with their reasons but never counted."""
    listings = tmp_path / "status-asks.csv"
    listings.write_text("event_id,timestamp,item_id,price,expires_at,source\n"
                        "st-1,2021-12-30T00:00:00Z,7804,3900,not-a-time,opensea\n")
    assert runner.invoke(app, ["ingest", "listings", str(listings)]).exit_code == 0
    assert runner.invoke(app, ["pause", "monitor", "--reason", "status test"]).exit_code == 0
    try:
        text = " ".join(runner.invoke(app, ["status"]).output.split())
    finally:
        assert runner.invoke(app, ["resume", "monitor"]).exit_code == 0
    assert "paused loops: monitor (status test)" in text, text
    assert "rejected listing events, malformed_expiry:" in text, text


def test_pausing_an_unknown_loop_is_a_usage_error(seeded):
    for command in ("pause", "resume"):
        result = runner.invoke(app, [command, "nowcats"])
        assert result.exit_code == 2 and "unknown loop 'nowcats'" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_train_registers_a_version_with_lineage_and_a_verified_artifact(seeded, s3, monkeypatch):
    from fairvalue.settings import get_settings
    from storage.registry import CHAMPION, get_alias, load_model
    from storage.tables import ModelVersion

    # Registration, lineage and the artifact are tested, not the model: 8 boosting rounds (FAIRVALUE_TRAIN_MAX_ITER)
    # instead of the session's 40 make the command's training and its diagnostics' fits 2x faster.
    monkeypatch.setattr(get_settings(), "train_max_iter", 8)
    result = runner.invoke(app, ["train", "--cutoff", "2021-06-01T00:00:00Z"])

    assert result.exit_code == 0, result.output
    with session_scope() as session:
        punks = ensure_collection(session, "cryptopunks")  # other collections' tests register versions too
        latest = session.exec(select(ModelVersion).where(ModelVersion.collection_id == punks.id)
                              .order_by(ModelVersion.id.desc())).first()
        champion = get_alias(session, punks, CHAMPION)
    assert latest.version >= 2
    assert latest.parent_id == champion.id  # lineage: trained while v1 was champion
    assert latest.data_end.year == 2021 and latest.data_end.month < 6
    assert champion.version == 1  # a later version is not promoted without the gates (#4)
    model = load_model(s3, latest)
    assert model.columns


def test_train_stores_diagnostics_with_the_version(seeded, s3):
    from storage.tables import ModelVersion

    with session_scope() as session:
        punks = ensure_collection(session, "cryptopunks")
        v1 = session.exec(select(ModelVersion).where(ModelVersion.collection_id == punks.id,
                                                     ModelVersion.version == 1)).one()
    diag = v1.metrics["diagnostics"]
    html = s3.get(diag["uri"], diag["sha256"]).decode()
    assert html.startswith("<!DOCTYPE html>") and html.count("<img") >= 3
    assert v1.metrics["model"]["n"] > 0 and "band_coverage" in v1.metrics["model"]
    assert [p["fraction"] for p in v1.metrics["learning_curve"]] == [0.25, 0.5, 1.0]
    # Three forward splits (FAIRVALUE_LEARNING_CURVE_SPLITS), the holdout the last; the full point
    # pools the splits that trained at every fraction, with its interval and paired difference.
    assert len(v1.metrics["learning_curve_split_starts"]) == 3
    assert v1.metrics["learning_curve_split_starts"][-1] == v1.metrics["holdout_start"]
    full = v1.metrics["learning_curve"][-1]
    assert 1 <= full["n_splits"] == len(full["split_mape"]) <= 3 and full["n_scored"] > 0
    assert full["valid_mape_lo"] <= full["valid_mape"] <= full["valid_mape_hi"] and full["mape_minus_full"] == 0


def test_drift_report_as_data_and_html(seeded, tmp_path):
    import json
    from datetime import date

    out = tmp_path / "drift.html"
    result = runner.invoke(app, ["drift", "--days", "30", "--out", str(out), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["n_features"] > 50
    assert report["summary"]["n_cur"] > 0 and report["summary"]["n_ref"] > 0
    ref_start, ref_end = (date.fromisoformat(d) for d in report["meta"]["reference"].split(" .. "))
    assert (ref_end - ref_start).days <= 30  # the champion's last training month, not its whole window
    assert report["prediction"]["psi"] is not None
    assert "<table" in out.read_text()
    # A window of one day holds a handful of sales: the text says so rather than print a bare PSI.
    one_day = json.loads(runner.invoke(app, ["drift", "--days", "1", "--json"]).stdout)["summary"]
    text = " ".join(runner.invoke(app, ["drift", "--days", "1"]).output.split())
    assert ("under 30 in a window" in text) == (min(one_day["n_cur"], one_day["n_ref"]) < 30), (one_day, text)


def test_replay_exports_rows_scored_against_earlier_snapshots(tmp_path):
    import csv
    import json

    from models.replay import EXPORT_COLUMNS

    export = tmp_path / "predictions.csv"
    listings = tmp_path / "listings.csv"  # asks to judge, and a row that is refused with its reason
    listings.write_text("event_id,timestamp,item_id,price,source,expires_at\n"
                        "ask-1,2021-12-21T10:00:00Z,7804,1,larvalabs,2021-12-22T00:00:00Z\n"
                        "ask-2,2021-12-22T10:00:00Z,3100,100000,larvalabs,\n"
                        "ask-3,2021-12-23T10:00:00Z,99999,50,larvalabs,\n")
    result = runner.invoke(app, ["replay", "--from", "2021-12-20", "--to", "2021-12-27", "--source", "bundled",
                                 "--export", str(export), "--listings", str(listings), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = list(csv.DictReader(export.open()))
    assert list(rows[0]) == EXPORT_COLUMNS
    assert len(rows) == report["model"]["n"] == report["sales_in_window"]
    assert all(r["snapshot_published_at"] < r["timestamp"] for r in rows)  # ISO strings in UTC sort as times
    assert all(r["timestamp"].endswith("Z") and r["snapshot_published_at"].endswith("Z") for r in rows)
    # The report's times in UTC with their Z, as the API writes them (they were naive: "2021-12-20T00:00:00").
    assert report["window"] == {"from": "2021-12-20T00:00:00Z", "to": "2021-12-27T00:00:00Z", "cadence": "1d"}
    assert report["trainings"][0]["trained_at"] == "2021-12-20T00:00:00Z"
    assert all(t["data_end"].endswith("Z") and t["data_end"] < t["trained_at"] for t in report["trainings"])
    assert report["ask_signals"]["settled_by"].endswith("Z")
    assert report["previous_day_floor"]["n"] == len(rows)
    assert {"buy_all", "strategy"} <= set(report["backtest"])
    asks = report["ask_signals"]
    assert asks["asks_in_window"] == asks["asks_valued"] == asks["n_events"] == 2
    assert asks["listings_refused"] == {"unknown_item": 1}
    assert asks["distribution"] == {"BUY": 1, "HOLD": 1}  # 1 ETH is under any punk's value, 100,000 over
    assert asks["outcomes_by_signal"]["BUY"]["ended"] == 1  # expired unsold the next midnight


def test_backtest_prints_both_strategies_and_exports_the_pairs_it_traded(tmp_path):
    """--export writes the pairs behind the figures, so they can be recomputed: their counts are
    the printed ones, and the strategy's are the undervalued ones."""
    import json

    import pandas as pd

    pairs = tmp_path / "pairs.csv"
    args = ["backtest", "--from", "2021-12-28", "--to", "2021-12-31", "--source", "bundled"]
    result = runner.invoke(app, [*args, "--export", str(pairs)])
    assert result.exit_code == 0, result.output
    for word in ("strategy", "below_market", "buy_all", "Sharpe", "Sortino", "Calmar", "max drawdown"):
        assert word in result.output
    body = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["backtest"]
    trades = pd.read_csv(pairs)
    assert len(trades) == body["n_eligible"] == body["buy_all"]["n_trades"] > 0
    assert trades["undervalued"].sum() == body["strategy"]["n_trades"]
    assert trades["below_market"].sum() == body["below_market"]["n_trades"]  # the naive baseline's
    assert (trades["exit_kind"] == "resale").sum() == body["buy_all"]["n_closed_by_resale"]
    assert trades["entry_ts"].str.endswith("Z").all() and (trades["exit_day"] >= trades["entry_day"]).all()
    cards = runner.invoke(app, ["backtest", "--collection", "cards", "--from", "2025-06-01", "--to", "2025-06-15",
                                "--source", "bundled", "--export", str(pairs)])
    assert cards.exit_code == 2 and "card-days" in cards.output


def test_backtest_of_the_cards_holds_card_days():
    """--collection cards: docs/cards.md's daily backtest on the bundled fixture, same as the function's."""
    import json

    import pandas as pd

    from fairvalue import evaluation
    from fairvalue.settings import get_settings

    args = ["backtest", "--collection", "cards", "--from", "2025-06-01", "--to", "2025-06-15", "--source", "bundled"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)["backtest"]
    settings = get_settings().for_collection("cards")
    expected = evaluation.backtest_daily(evaluation.load_daily(settings, "bundled"), pd.Timestamp("2025-06-01"),
                                         pd.Timestamp("2025-06-15"), settings)
    assert body == json.loads(json.dumps(expected)) and body["buy_all"]["n_days"] == 14
    printed = runner.invoke(app, args)
    assert printed.exit_code == 0 and "eligible card-days" in printed.output and "buy_all" in printed.output
    early = runner.invoke(app, ["backtest", "--collection", "cards", "--from", "2025-01-02", "--to", "2025-02-01",
                                "--source", "bundled"])
    assert early.exit_code == 2 and "2025-01-15 at the earliest" in early.output


def _fairvalue(*args: str, database_url: str) -> subprocess.CompletedProcess:
    """The installed command as an operator runs it (its entry point, not the Typer app)."""
    return subprocess.run([sys.executable, "-m", "fairvalue.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FAIRVALUE_DATABASE_URL": database_url})


def test_a_database_without_the_schema_says_to_upgrade_it(database, tmp_path):
    empty = f"{TEST_DB}_empty"
    scratch.create(PG_ADMIN_URL, empty)
    try:
        sales = tmp_path / "sales.csv"
        sales.write_text("event_id,timestamp,punk_id,price_eth\ne1,2021-10-01T00:00:00Z,5,70\n")
        result = _fairvalue("ingest", "sales", str(sales), database_url=database.rsplit("/", 1)[0] + "/" + empty)
    finally:
        scratch.drop(PG_ADMIN_URL, empty)
    assert result.returncode == 2, result.stderr
    assert "has no fairvalue schema" in result.stderr and "run `fairvalue db upgrade` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_training_a_daily_collection_before_it_exists_says_so_and_does_not_hang(database):
    """`train` created the collection in one transaction and trained in a second, which waited
    for the first's uncommitted row forever (on a database where the cards were never loaded)."""
    fresh = f"{TEST_DB}_fresh"
    scratch.create(PG_ADMIN_URL, fresh)
    try:
        url = database.rsplit("/", 1)[0] + "/" + fresh
        assert _fairvalue("db", "upgrade", database_url=url).returncode == 0
        result = _fairvalue("train", "--collection", "cards", database_url=url)  # 120 s timeout
    finally:
        scratch.drop(PG_ADMIN_URL, fresh)
    assert result.returncode == 1, result.stderr
    assert "nothing trained: no prices to train on" in result.stderr  # errors go to stderr


def test_a_database_it_cannot_reach_is_named_without_its_password(database):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _fairvalue("status", database_url=f"postgresql://fairvalue:hunter2@127.0.0.1:{port}/fairvalue")
    assert result.returncode == 2, result.stderr
    assert f"cannot reach the database postgresql://fairvalue:***@127.0.0.1:{port}/fairvalue" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_rollback_with_nothing_to_roll_back_to_says_so(database):
    with session_scope() as session:
        ensure_collection(session, "cli-no-champion")
    result = runner.invoke(app, ["rollback", "--collection", "cli-no-champion", "--reason", "try"])
    assert result.exit_code == 1, result.output
    assert "not rolled back: nothing to roll back to" in result.output
    assert runner.invoke(app, ["promote", "1", "--collection", "cli-no-champion"]).exit_code == 1


def test_an_over_long_or_empty_retrain_reason_is_a_usage_error_and_nothing_is_queued(seeded):
    """The API refuses a reason over lifecycle.MAX_REASON_LENGTH; the CLI did not (it stored it
    whole), so the two paths disagreed. Both refuse it now, saying the limit."""
    from fairvalue.lifecycle import MAX_REASON_LENGTH
    from storage.tables import TrainingRequest

    def said(result) -> str:  # the error box's text on one line (rich wraps it at the terminal's width)
        return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())

    with session_scope() as session:
        before = session.exec(select(func.count()).select_from(TrainingRequest)).one()
    for reason, message in (("r" * (MAX_REASON_LENGTH + 1), f"at most {MAX_REASON_LENGTH} characters"),
                            (" ", "non-empty")):
        result = runner.invoke(app, ["retrain", "--reason", reason])
        assert result.exit_code == 2 and message in said(result) and "--reason" in said(result), result.output
    for args in (["rollback"], ["promote", "1"]):
        result = runner.invoke(app, [*args, "--reason", "r" * (MAX_REASON_LENGTH + 1)])
        assert result.exit_code == 2 and f"at most {MAX_REASON_LENGTH}" in said(result), (args, result.output)
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(TrainingRequest)).one() == before


def test_operator_mistakes_are_usage_errors_not_tracebacks(database, tmp_path, monkeypatch):
    usage = {
        ("replay", "--from", "2021-10-01", "--to", "2021-10-02", "--source", "bogus"):
            "must be one of auto, db, bundled",
        ("decisions", "--limit", "-1"): "--limit",
        ("cards", "fixture", "--out", str(tmp_path / "x.csv"), "--start", "2025-13-01"): "not a date",
        # each of these four was a traceback
        ("cards", "fixture", "--out", str(tmp_path / "no-such-folder" / "x.csv")): "cannot write",
        ("cards", "fixture", "--out", str(tmp_path)): "cannot write",
        ("cards", "fixture", "--out", str(tmp_path / "x.csv"), "--seed", "-1"): "'--seed'",
        ("cards", "fixture", "--out", str(tmp_path / "x.csv"), "--days", "100000"): "'--days'",
        ("cards", "fixture", "--out", str(tmp_path / "x.csv"), "--start", "2300-01-01"): "is outside",
        # config/cards.yaml's first_day: every price of the series would be refused as before_collection
        ("cards", "fixture", "--out", str(tmp_path / "x.csv"), "--start", "1995-01-01"):
            "before the market's first day of trading, 1999-01-09",
    }
    for args, message in usage.items():
        result = runner.invoke(app, list(args))
        # the error box's text on one line (rich wraps it at the terminal's width)
        box = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())
        assert result.exit_code == 2 and message in box, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
    monkeypatch.setenv("FAIRVALUE_CARDS_CONFIG", str(tmp_path / "missing.yaml"))
    from fairvalue.settings import get_settings

    get_settings.cache_clear()
    try:
        for args in (("cards", "load"), ("cards", "fixture", "--out", str(tmp_path / "x.csv"))):
            result = runner.invoke(app, list(args))
            assert result.exit_code == 2 and "cannot read it" in result.output, (args, result.output)
    finally:
        monkeypatch.delenv("FAIRVALUE_CARDS_CONFIG")
        get_settings.cache_clear()


def test_a_refusal_quoting_brackets_keeps_them(database, tmp_path):
    """rich read the id pattern's [a-z0-9] as markup and printed '^{0,63}$'."""
    bad = tmp_path / "cards.yaml"
    bad.write_text("collection: cardsbrackets\nname: x\ncurrency: USD\ncards:\n"
                   "  - {id: Bad_Id, name: x, set: s, number: '1', external_id: '1', category: grail}\n")
    result = runner.invoke(app, ["cards", "load", "--config", str(bad)])
    assert result.exit_code == 2 and "^[a-z0-9][a-z0-9-]{0,63}$" in " ".join(result.stderr.split()), result.output


def test_status_of_a_mistyped_collection_creates_nothing(database):
    result = runner.invoke(app, ["status", "--collection", "cryptopunk"])
    assert result.exit_code == 1 and "unknown collection 'cryptopunk'" in result.output, result.output
    with session_scope() as session:
        assert session.exec(select(Collection).where(Collection.slug == "cryptopunk")).first() is None


def test_prices_go_only_to_a_daily_priced_collection(seeded, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text("date,card_id,market_price\n2025-07-01,x,1\n")
    result = runner.invoke(app, ["ingest", "prices", str(prices), "--collection", "cryptopunks"])
    assert result.exit_code == 2 and "is of kind unique_items" in result.output, result.output


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_a_retrain_from_the_cli_records_which_login_asked(database, broker):
    """The CLI has no token: its requests (and its promote and rollback decisions) name the
    shell's login, as the API's name the token. A collection of its own, with no sales: should the
    request reach a worker, it is skipped, and the bundled champion is left alone."""
    import getpass

    from storage.tables import TrainingRequest

    with session_scope() as session:
        ensure_collection(session, "cli-who")
    result = runner.invoke(app, ["retrain", "--collection", "cli-who", "--reason", "who asked", "--param",
                                 "max_iter=8"])
    assert result.exit_code == 0, result.output
    assert "published to the training queue" in result.output, result.output  # it said only "queued"
    with session_scope() as session:
        request = session.exec(select(TrainingRequest).where(TrainingRequest.reason == "operator: who asked")).one()
    assert request.trigger == {"operator": f"cli:{getpass.getuser()}"}


def test_a_sqlite_file_never_created_is_named_with_the_command_that_makes_it(tmp_path):
    """A fresh checkout before its first upgrade: the folder of the SQLite file does not exist."""
    url = f"sqlite:///{tmp_path / 'not-made' / 'fairvalue.db'}"
    result = _fairvalue("status", database_url=url)
    assert result.returncode == 2, result.stderr
    assert "it was never created: run `fairvalue db upgrade` (or `./run up`) first" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "not-made").mkdir()
    made = _fairvalue("db", "upgrade", database_url=url)
    assert made.returncode == 0, made.stderr
    after = _fairvalue("status", database_url=url)  # reachable now: an empty database, no collection yet
    assert "unknown collection" in after.stderr and "cannot reach" not in after.stderr, after


def test_decisions_of_another_collection_and_of_none(database):
    """`decisions --collection` reads that collection's trail; a slug that names none is refused
    and leaves no collection behind."""
    with session_scope() as session:
        ensure_collection(session, "cli-trail")
    shown = runner.invoke(app, ["decisions", "--collection", "cli-trail"])
    assert shown.exit_code == 0 and "decisions of cli-trail" in shown.output, shown.output
    refused = runner.invoke(app, ["decisions", "--collection", "no-such-trail"])
    assert refused.exit_code == 1 and "unknown collection 'no-such-trail'" in refused.output, refused.output
    with session_scope() as session:
        assert session.exec(select(Collection).where(Collection.slug == "no-such-trail")).first() is None


def test_decisions_show_their_numbers_and_print_the_apis_read_as_json(database):
    """The operator review: the help says "with the numbers they used" and the table showed none;
    and there was no --json. Now a numbers column, and --json prints model_reads.decisions (GET /decisions)."""
    import json

    from fairvalue import model_reads
    from storage.tables import PromotionDecision

    with session_scope() as session:
        coll = ensure_collection(session, "cli-trail-numbers")
        session.add(PromotionDecision(
            collection_id=coll.id, decision="reject", decided_by="gates", reason="Rejected because mape.",
            numbers={"contender": {"mape": 0.25, "n": 40}, "champion": {"mape": 0.2, "n": 40}}))
    shown = runner.invoke(app, ["decisions", "--collection", "cli-trail-numbers"])
    assert shown.exit_code == 0, shown.output
    assert "MAPE new / old" in shown.output and "0.250 / 0.200 (40)" in shown.output, shown.output
    printed = runner.invoke(app, ["decisions", "--collection", "cli-trail-numbers", "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == model_reads.decisions("cli-trail-numbers", limit=20)


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_the_file_commands_take_a_collection_and_refuse_one_that_cannot_take_the_file(seeded, tmp_path):
    """`ingest sales` and `explain --collection` work on the named collection; `ingest sales` refuses
    a slug that names none, a daily-priced collection or one never seeded, with why, creating
    nothing (every command's refusal of a mistyped slug: the test below)."""
    from fairvalue.kinds import DAILY_PRICES

    path = tmp_path / "named.csv"
    path.write_text("event_id,timestamp,punk_id,price_eth\nnamed-1,2021-12-30T12:00:00Z,12,71\n")
    named = runner.invoke(app, ["ingest", "sales", str(path), "--collection", "cryptopunks"])
    assert named.exit_code == 0 and "into cryptopunks" in " ".join(named.output.split()), named.output
    with session_scope() as session:
        assert session.exec(select(Sale).where(Sale.event_id == "named-1")).one().price == 71
        ensure_collection(session, "cli-unseeded")
        session.add(Collection(slug="cli-daily", name="cli-daily", kind=DAILY_PRICES, currency="USD"))

    refusals = {"no-such-market": (1, "unknown collection 'no-such-market'"),  # before any work
                "cli-daily": (2, "takes daily prices (`fairvalue ingest prices`)"),
                "cli-unseeded": (2, "has no items: run `fairvalue seed` first")}
    for slug, (code, why) in refusals.items():
        refused = runner.invoke(app, ["ingest", "sales", str(path), "--collection", slug])
        assert refused.exit_code == code and why in " ".join(refused.output.split()), (slug, refused.output)

    explained = runner.invoke(app, ["explain", "7804", "--collection", "cryptopunks", "--json"])
    assert explained.exit_code == 0 and '"fair_value"' in explained.output, explained.output
    with session_scope() as session:
        assert session.exec(select(Collection).where(Collection.slug == "no-such-market")).first() is None
        assert session.exec(select(RejectedSale).where(RejectedSale.origin == "file:named.csv")).first() is None


@pytest.mark.parametrize("command", [
    ["train"], ["nowcast"], ["retrain", "--reason", "typo"], ["promote", "1"], ["rollback"], ["decisions"],
    ["status"], ["explain", "7804"], ["quote", "7804", "70"], ["drift"],
    ["replay", "--from", "2021-12-01", "--to", "2021-12-03"],
    ["backtest", "--from", "2021-12-01", "--to", "2021-12-03"], ["cards", "collect"],
], ids=lambda command: command[0])
def test_a_mistyped_collection_is_refused_by_every_command_and_made_by_none(database, command):
    """Most commands made the collection they were named on first use: a typo became a
    collection (and `retrain` queued a request for it, `replay` failed on its empty market)."""
    result = runner.invoke(app, [*command, "--collection", "cli-typo"])
    assert result.exit_code == 1 and "unknown collection 'cli-typo'" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    with session_scope() as session:
        assert session.exec(select(Collection).where(Collection.slug == "cli-typo")).first() is None


def test_a_nowcast_of_a_moment_to_come_is_refused_and_writes_nothing(seeded):
    """Snapshots publish in the order of their as_of: one of next year would have outranked every
    nowcast until then, freezing the published values."""
    from datetime import timedelta

    from storage.tables import NowcastSnapshot, utcnow

    later = utcnow() + timedelta(days=365)
    result = runner.invoke(app, ["nowcast", "--as-of", later.isoformat()])
    assert result.exit_code == 2 and "is in the future" in result.output, result.output  # input: exit 2 (README)
    with session_scope() as session:  # by its moment: a worker of another test may publish meanwhile
        assert session.exec(select(NowcastSnapshot.id).where(NowcastSnapshot.as_of > utcnow())).all() == []


def test_a_nowcast_of_a_moment_before_the_market_is_refused_and_writes_nothing(seeded):
    """Before the first floor no item has a fair value: the snapshot's rows could not be written
    (a NOT NULL traceback); now a one-line refusal."""
    from datetime import UTC, datetime

    from storage.tables import NowcastSnapshot

    result = runner.invoke(app, ["nowcast", "--as-of", "2016-01-01T00:00:00Z"])
    assert result.exit_code == 1 and "have no fair value at 2016-01-01" in " ".join(result.output.split())
    assert isinstance(result.exception, SystemExit)  # no traceback
    with session_scope() as session:  # by its moment: a worker of another test may publish meanwhile
        early = select(NowcastSnapshot.id).where(NowcastSnapshot.as_of < datetime(2017, 1, 1, tzinfo=UTC))
        assert session.exec(early).all() == []


def test_a_nowcast_asked_by_hand_while_its_loop_is_paused_runs_and_says_the_loop_is_paused(seeded):
    """An operator who paused the nowcasts (a bad model, say) and then ran one by hand was not told
    that the loop is paused."""
    from fairvalue import lifecycle

    lifecycle.set_paused("nowcast", True, "bad model")
    try:
        result = runner.invoke(app, ["nowcast"])
    finally:
        lifecycle.set_paused("nowcast", False)
    assert result.exit_code == 0 and "items, model v" in result.stdout, result.output
    assert "note: the nowcast loop is paused: its scheduled runs skip" in " ".join(result.stderr.split())
    assert "paused" not in result.stdout


def test_a_worker_whose_clock_runs_ahead_values_at_the_databases_now(seeded, monkeypatch):
    """Snapshots publish in the order of their as_of. A nowcast's "now" is the database's clock,
    which every worker shares: a worker an hour ahead publishes a snapshot of the real now, not
    one that would outrank every other worker's for that hour."""
    from datetime import timedelta

    from fairvalue import pipeline
    from storage.tables import NowcastSnapshot, utcnow

    monkeypatch.setattr(pipeline, "utcnow", lambda: utcnow() + timedelta(hours=1))
    result = pipeline.nowcast()
    with session_scope() as session:
        as_of = session.get(NowcastSnapshot, result.snapshot_id).as_of
    assert result.published and abs(as_of - utcnow()) < timedelta(minutes=1)


def test_quote_checks_a_price_against_the_published_value(seeded):
    """The CLI's quote is the API's (fairvalue.item_reads.quote): the same answer, and a price it
    cannot take is refused with the reason."""
    import json

    from fairvalue import item_reads

    fair = item_reads.quote(None, "7804", 1.0)["fair_value"]
    result = runner.invoke(app, ["quote", "7804", str(fair * 0.8), "--json"])
    assert result.exit_code == 0, result.output
    quoted = json.loads(result.stdout)
    assert (quoted["signal"], quoted["band_position"] in {"below_band", "in_band"}) == ("BUY", True)
    assert quoted["deviation"] == pytest.approx(-0.2, abs=1e-5)
    text = runner.invoke(app, ["quote", "7804", str(fair * 1.3)])
    assert text.exit_code == 0 and "SELL" in text.output and "+30.0%" in text.output, text.output
    refused = runner.invoke(app, ["quote", "7804", "0"])
    assert refused.exit_code == 2 and "price must be above 0" in refused.output  # input refused: exit 2 (README)


def test_replay_drift_and_explain_refuse_what_they_cannot_do_before_any_work(seeded, tmp_path):
    """Each was a traceback, a silently wrong answer, or minutes of work thrown away."""
    usage = {
        # no sale to score: refused before the replay trains
        ("replay", "--from", "2030-01-01", "--to", "2030-01-03"): "holds no sale or listing event",
        # the sales before the window cannot train a model (the bundled market's first minutes)
        ("replay", "--from", "2017-06-23T21:06:00Z", "--to", "2017-06-24"): "usable sales to train on",
        ("backtest", "--from", "2017-06-23T21:06:00Z", "--to", "2017-06-24"): "usable sales to train on",
        # an export nowhere to be written: refused before the replay, not after it
        ("replay", "--from", "2021-12-30", "--to", "2021-12-31", "--export", str(tmp_path / "no" / "x.csv")):
            "cannot write",
        ("drift", "--days", "0"): "--days",
        ("drift", "--out", str(tmp_path / "no" / "x.html")): "cannot write",
        ("explain", "7804", "--top", "-3"): "top must be between 1 and 30",
        ("explain", "7804", "--comps", "-1"): "comps must be between 0 and 45",
        # options a daily-priced collection's replay does not read were ignored without a word
        ("replay", "--collection", "cards", "--from", "2025-05-01", "--to", "2025-06-01", "--export",
         str(tmp_path / "c.csv")): "--export",
        ("replay", "--collection", "cards", "--from", "2025-05-01", "--to", "2025-06-01", "--cadence", "30m"):
            "--cadence",
        ("replay", "--collection", "cards", "--from", "2025-05-01", "--to", "2025-06-01", "--gain", "-1"):
            "--gain must be above 0",
    }
    empty = tmp_path / "later.csv"
    empty.write_text("")
    usage[("replay", "--from", "2021-12-30", "--to", "2021-12-31", "--sales", str(empty))] = "the file is empty"
    for args, message in usage.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (args, result.output)
        assert isinstance(result.exception, SystemExit), args  # no traceback
    assert not (tmp_path / "c.csv").exists()


def test_errors_go_to_stderr_so_json_output_stays_json(seeded):
    for args in (["quote", "99999", "1", "--json"], ["explain", "99999", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and result.stdout == "", (args, result.stdout)
        assert "no item '99999'" in result.stderr, (args, result.stderr)


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_promote_and_rollback_say_the_nowcast_they_asked_for(client, broker, monkeypatch):
    """They asked for a nowcast and printed nothing of it; `ingest` says its follow-up was sent.
    With the broker down the change stands, and the line says why nothing was sent."""
    import tasks.app
    from fairvalue.settings import get_settings
    from tests.builders import champion_and_another

    champion, other = champion_and_another()
    promoted = runner.invoke(app, ["promote", str(other), "--reason", "cli follow-up"])
    rolled = runner.invoke(app, ["rollback", "--reason", "cli follow-up"])
    for result, change in ((promoted, f"champion: v{other}"), (rolled, f"champion: v{champion} (rolled back")):
        assert result.exit_code == 0 and change in result.output, result.output
        assert "follow-up sent: a nowcast is asked for, to serve the new champion" in result.output, result.output
    unchanged = runner.invoke(app, ["promote", str(champion)])  # no change: nothing to ask for
    assert unchanged.exit_code == 0 and "(unchanged)" in unchanged.output and "follow-up" not in unchanged.output

    with socket.socket() as s:  # a port nothing listens on: a real connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    monkeypatch.setattr(tasks.app, "app", tasks.app.create_app(get_settings().model_copy(update={"broker_url": dead})))
    champion, other = champion_and_another()
    try:
        promoted = runner.invoke(app, ["promote", str(other), "--reason", "cli broker down"])
    finally:
        rolled = runner.invoke(app, ["rollback", "--reason", "cli broker down"])
    for result in (promoted, rolled):
        said = " ".join(result.output.split())  # rich wraps the line at the terminal's width
        assert result.exit_code == 0 and "follow-up sent" not in said, said
        assert "not sent (" in said and "the next scheduled nowcast serves the new champion" in said, said


@pytest.mark.usefixtures("leaves_nothing_queued")
def test_promote_refuses_a_version_the_gates_rejected_unless_forced(client, broker):
    from tests.builders import champion_and_another, rejected_by_gates

    champion, other = champion_and_another()
    with rejected_by_gates(other, "worse on the holdout") as decision_id:
        refused = runner.invoke(app, ["promote", str(other), "--reason", "cli try"])
        said = " ".join(refused.stderr.split())
        assert refused.exit_code == 1, refused.output
        assert f"version {other} was rejected by the gates on " in said, said
        assert f"(decision {decision_id}): worse on the holdout; pass --force to promote it anyway" in said, said
        assert client.get("/v1/models").json()["aliases"]["champion"] == champion
        try:
            forced = runner.invoke(app, ["promote", str(other), "--reason", "cli insists", "--force"])
            assert forced.exit_code == 0 and f"champion: v{other}" in forced.output, forced.output
            assert f"forced over decision {decision_id}" in " ".join(forced.output.split())
        finally:
            runner.invoke(app, ["rollback", "--reason", "cli forced test over"])
