"""Suspected wash trades against real PostgreSQL: flagged as they are stored (also when the
evidence arrives late), kept, left out of what the model loads, and listed with their reason.
The seeded database flags exactly the sales the file path flags."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from fairvalue import pipeline
from fairvalue.settings import get_settings
from models.wash import WashReason
from storage.bundled import market_data_from_files
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.market import load_market_data
from storage.tables import Sale

pytestmark = pytest.mark.integration

START = datetime(2021, 12, 10, tzinfo=UTC)


# The event ids this file stores, each behind this prefix: its names alone ("late-2") are short
# enough for another file's to begin the same (tests/security/test_webhook_replay.py stores
# "late-replay-<ns>"), and such a sale, stored earlier in the session, was read as one of these.
# The helpers below read back only this file's sales, by their names without it.
OURS = "wash-trades-test:"


def sale(event_id: str, days: float, punk: int, seller: str, buyer: str, price: float = 95.0) -> dict:
    return {"event_id": OURS + event_id, "timestamp": (START + timedelta(days=days)).isoformat(),
            "punk_id": str(punk), "price_eth": price, "seller": seller, "buyer": buyer, "source": "test"}


def stored_reasons(prefix: str) -> dict[str, str | None]:
    with session_scope() as session:
        rows = session.exec(select(Sale.event_id, Sale.wash_reason)
                            .where(Sale.event_id.startswith(f"{OURS}{prefix}-", autoescape=True))).all()
    return {event_id.removeprefix(OURS): reason for event_id, reason in rows}


def kept_and_left_out(data, prefix: str) -> tuple[set[str], dict[str, str]]:
    """Of market data, this file's sales named `prefix`-...: those kept for the model, and those
    left out with their reason."""
    def ours(ids):
        return ids.str.startswith(f"{OURS}{prefix}-")

    kept = set(data.sales["event_id"][ours(data.sales["event_id"])].str.removeprefix(OURS))
    left_out = data.excluded[ours(data.excluded["event_id"])]
    return kept, dict(zip(left_out["event_id"].str.removeprefix(OURS), left_out["reason"], strict=True))


def loaded(prefix: str):
    with session_scope() as session:
        data = load_market_data(session, ensure_collection(session, get_settings().collection), with_excluded=True)
    return kept_and_left_out(data, prefix)


def test_a_round_trip_is_stored_flagged_and_left_out_of_the_model(seeded):
    report = pipeline.ingest_sales_rows([sale("rt-1", 0, 3100, "0xaa01", "0xbb01"),
                                         sale("rt-2", 2, 3100, "0xbb01", "0xaa01", price=140.0)], "test")
    assert report.accepted == 2 and report.rejected == 0  # kept, not refused
    assert stored_reasons("rt") == {"rt-1": None, "rt-2": WashReason.ROUND_TRIP}
    kept, left_out = loaded("rt")
    assert kept == {"rt-1"}
    assert left_out == {"rt-2": WashReason.ROUND_TRIP}


def test_a_late_first_leg_flags_the_stored_return_and_a_resend_changes_nothing(seeded):
    pipeline.ingest_sales_rows([sale("late-2", 3, 3101, "0xbb02", "0xaa02")], "test")
    assert stored_reasons("late") == {"late-2": None}  # nothing to go on yet
    pipeline.ingest_sales_rows([sale("late-1", 1, 3101, "0xaa02", "0xbb02")], "test")
    assert stored_reasons("late") == {"late-1": None, "late-2": WashReason.ROUND_TRIP}
    again = pipeline.ingest_sales_rows([sale("late-1", 1, 3101, "0xaa02", "0xbb02"),
                                        sale("late-2", 3, 3101, "0xbb02", "0xaa02")], "test")
    assert (again.accepted, again.duplicate) == (0, 2)
    assert stored_reasons("late") == {"late-1": None, "late-2": WashReason.ROUND_TRIP}


def test_a_pairs_third_trade_is_flagged_and_an_unknown_buyer_never_is(seeded):
    rows = [sale(f"pair-{i}", i, 3200 + i, "0xaa03", "0xbb03") for i in range(3)]
    rows += [sale(f"pair-bid-{i}", i, 3300 + i, "0xaa03", "0x" + "0" * 40) for i in range(3)]
    pipeline.ingest_sales_rows(rows, "test")
    reasons = stored_reasons("pair")
    assert reasons["pair-2"] == WashReason.REPEATED_PAIR
    assert [reasons[f"pair-{i}"] for i in range(2)] == [None, None]
    assert all(reasons[f"pair-bid-{i}"] is None for i in range(3))


def test_two_batches_stored_at_once_still_flag_the_round_trip_they_make_together(seeded):
    """Each batch holds one leg. The second to flag must wait for the first to commit, or it reads
    a window without the other leg (a transaction cannot see uncommitted sales) and the return
    goes unflagged; storage/wash.py serialises the flagging with an advisory lock."""
    settings = get_settings()
    outward, back = sale("both-1", 0, 3102, "0xaa04", "0xbb04"), sale("both-2", 1, 3102, "0xbb04", "0xaa04")
    with ThreadPoolExecutor(max_workers=1) as other_writer:
        with session_scope() as first:
            pipeline.ingest_sales_call(first, [outward], "test", settings)  # flagged, not committed yet
            second = other_writer.submit(pipeline.ingest_sales_rows, [back], "test", settings)
            done, _ = wait([second], timeout=1.0)
            assert not done, "the second batch flagged its sale without waiting for the first to commit"
        assert second.result(timeout=30).accepted == 1
    assert stored_reasons("both") == {"both-1": None, "both-2": WashReason.ROUND_TRIP}


def test_a_replays_extra_file_is_flagged_with_the_stored_sales_as_evidence(seeded, tmp_path):
    """`fairvalue replay --sales FILE` on a database: the file's sales are flagged beside the
    stored ones (the database's sales carry the parties the market loader leaves behind)."""
    from fairvalue.evaluation import load_market

    settings = get_settings()
    pipeline.ingest_sales_rows([sale("rp-1", 0, 3103, "0xaa05", "0xbb05"),
                                sale("rp-4", 5, 3104, "0xcc05", "0xdd05")], "test")
    assert stored_reasons("rp") == {"rp-1": None, "rp-4": None}
    later = tmp_path / "later.csv"
    columns = ["event_id", "timestamp", "punk_id", "price_eth", "seller", "buyer", "source"]
    rows = [sale("rp-2", 2, 3103, "0xbb05", "0xaa05"),  # returns rp-1's punk: a round trip
            sale("rp-3", 3, 3104, "0xdd05", "0xcc05"),  # the earlier leg of stored rp-4's round trip
            sale("rp-5", 4, 3105, "0xee05", "0xff05")]
    later.write_text("\n".join([",".join(columns), *(",".join(str(r[c]) for c in columns) for r in rows)]) + "\n")

    kept, left_out = kept_and_left_out(load_market(settings, "db", [later], None, None), "rp")
    assert kept == {"rp-1", "rp-3", "rp-5"}
    assert left_out == {"rp-2": WashReason.ROUND_TRIP, "rp-4": WashReason.ROUND_TRIP}
    assert stored_reasons("rp") == {"rp-1": None, "rp-4": None}  # a replay reads; it never writes the flags


def test_the_seed_flags_the_same_sales_as_the_file_path(seeded):
    settings = get_settings()
    bundled = settings.data_dir / settings.collection
    files = market_data_from_files(bundled / "punks.csv", [bundled / "sales.csv"], [bundled / "floor.csv"],
                                   [bundled / "eth_usd.csv"], settings.min_floor_fraction)
    from_files = files.excluded[files.excluded["reason"].str.startswith("wash_")]
    with session_scope() as session:
        flagged = dict(session.exec(select(Sale.event_id, Sale.wash_reason).where(
            Sale.wash_reason.is_not(None), Sale.source != "test")).all())
    assert len(from_files) > 100
    assert flagged == dict(zip(from_files["event_id"], from_files["reason"], strict=True))


def test_the_migration_flags_the_sales_a_database_already_holds(tmp_path):
    """An upgrade from before the column leaves out what a fresh database would."""
    import sqlalchemy as sa

    from storage.migrate import upgrade
    from tests.realparts import database_before

    url, engine = database_before("0005", tmp_path, [
        {"event_id": f"old-{i}", "ts": (START + timedelta(days=days)).isoformat(), "seller": seller, "buyer": buyer}
        for i, (days, seller, buyer) in enumerate([(0, "0xaa", "0xbb"), (1, "0xbb", "0xaa"), (2, "0xcc", "0xcc")])])
    upgrade(url, "head")
    with engine.connect() as conn:
        reasons = dict(conn.execute(sa.text("SELECT event_id, wash_reason FROM sales")).all())
    engine.dispose()
    assert reasons == {"old-0": None, "old-1": WashReason.ROUND_TRIP, "old-2": WashReason.SELF_TRADE}
