"""`fairvalue status`'s counts (fairvalue/status.py collection_status) on hand-built rows of two
collections, on SQLite: each counts only its own rows, a daily-priced one counts its prices, and
the API's summary reads the same counts (storage/counts.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session, select

import storage.tables  # noqa: F401  (registers the tables)
from fairvalue import reads, status
from fairvalue.errors import NotFound
from fairvalue.status import Champion, Published
from storage.ingest import add_items, ensure_collection
from storage.registry import CHAMPION
from storage.tables import (
    Collection,
    DailyPrice,
    Listing,
    LoopState,
    ModelAlias,
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    PublishedSnapshot,
    RejectedListing,
    RejectedSale,
    Sale,
)
from tests.builders import sessions_on

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def engine(memory_engine, monkeypatch):
    sessions_on(monkeypatch, status, memory_engine)
    sessions_on(monkeypatch, reads, memory_engine)
    return memory_engine


def _sale(coll: Collection, n: int, wash_reason: str | None = None) -> Sale:
    return Sale(collection_id=coll.id, event_id=f"s{n}", item_key=str(n % 3 + 1), ts=T0.replace(day=n),
                price=10.0 + n, content_hash=f"h{n}", wash_reason=wash_reason)


def _refused(table, coll: Collection, n: int, reason: str):
    return table(collection_id=coll.id, reason=reason, row={"n": n}, row_hash=f"r{n}")


def _snapshot(session: Session, coll: Collection, version: ModelVersion, day: int, keys: list[str],
              valued_day: int | None = None, thinned: bool = False) -> NowcastSnapshot:
    snap = NowcastSnapshot(collection_id=coll.id, model_version_id=version.id, as_of=T0.replace(day=day),
                           valued_at=T0.replace(day=valued_day or day), status="published",
                           rows_thinned_at=T0 if thinned else None)
    session.add(snap)
    session.flush()
    session.add_all([NowcastRow(snapshot_id=snap.id, item_key=key, fair_value=1.0) for key in keys])
    return snap


@pytest.fixture
def stored(engine) -> int:
    return store_rows(engine)


def store_rows(engine) -> int:
    """Punks: 3 items, 6 sales (3 flagged), 3 refused sales, 2 listings and 1 refused, two
    snapshots (4 rows, one thinned; the later published, valued before its moment), a champion.
    Cards: 2 items, 3 daily prices, 1 refused, one snapshot, no champion, nothing published.
    The monitor loop is paused. The published snapshot's id."""
    with Session(engine) as session:
        punks, cards = ensure_collection(session, "cryptopunks"), ensure_collection(session, "cards")
        add_items(session, punks, [{"item_key": k} for k in ("1", "2", "3")])
        add_items(session, cards, [{"item_key": k} for k in ("a", "b")])
        session.add_all([_sale(punks, n) for n in (1, 2, 3)]
                        + [_sale(punks, 4, "wash_round_trip"), _sale(punks, 5, "wash_round_trip"),
                           _sale(punks, 6, "wash_self_trade")])
        session.add_all([_refused(RejectedSale, punks, 1, "unknown_item"),
                         _refused(RejectedSale, punks, 2, "unknown_item"),
                         _refused(RejectedSale, punks, 3, "malformed_row"),
                         _refused(RejectedSale, cards, 4, "implausible_price")])
        session.add_all([Listing(collection_id=punks.id, event_id=f"l{n}", item_key="1", ts=T0, price=50.0,
                                 content_hash=f"l{n}") for n in (1, 2)])
        session.add(_refused(RejectedListing, punks, 5, "malformed_expiry"))
        session.add_all([DailyPrice(collection_id=cards.id, item_key=key, day=date(2024, 3, d), price=2.0)
                         for key, d in (("a", 1), ("a", 2), ("b", 1))])
        punk_model = ModelVersion(collection_id=punks.id, version=1, estimator="test", artifact_uri="v1",
                                  sha256="ab" * 32)
        card_model = ModelVersion(collection_id=cards.id, version=1, estimator="test", artifact_uri="c1",
                                  sha256="cd" * 32)
        session.add_all([punk_model, card_model])
        session.flush()
        session.add(ModelAlias(collection_id=punks.id, alias=CHAMPION, model_version_id=punk_model.id))
        _snapshot(session, punks, punk_model, 2, ["1", "2", "3"], thinned=True)
        published = _snapshot(session, punks, punk_model, 9, ["1"], valued_day=6)
        _snapshot(session, cards, card_model, 2, ["a"])
        session.add(PublishedSnapshot(collection_id=punks.id, snapshot_id=published.id))
        session.add(LoopState(loop="monitor", paused=True, reason="status test", changed_by="ops@host"))
        session.commit()
        return published.id


def test_status_counts_a_collections_own_rows(stored):
    punks = status.collection_status("cryptopunks")
    assert (punks.slug, punks.daily, punks.items, punks.rows, punks.listings) == ("cryptopunks", False, 3, 6, 2)
    assert (punks.snapshots, punks.snapshot_rows, punks.thinned) == (2, 4, 1)
    assert punks.rejected == {"unknown_item": 2, "malformed_row": 1}
    assert punks.rejected_listings == {"malformed_expiry": 1}
    assert punks.kept_out == {"wash_round_trip": 2, "wash_self_trade": 1}
    assert punks.champion == Champion(1, "ab" * 32)
    assert punks.published == Published(stored, T0.replace(day=9), T0.replace(day=6))
    assert punks.published.market_silent
    assert len(punks.paused) == 1 and punks.paused[0].startswith("monitor (status test) since 2")
    assert punks.paused[0].endswith(" by ops@host")


def test_a_daily_priced_collection_counts_its_prices(stored):
    cards = status.collection_status("cards")
    assert (cards.daily, cards.items, cards.rows, cards.listings) == (True, 2, 3, 0)
    assert (cards.snapshots, cards.snapshot_rows, cards.thinned) == (1, 1, 0)
    assert (cards.rejected, cards.rejected_listings, cards.kept_out) == ({"implausible_price": 1}, {}, {})
    assert (cards.champion, cards.published) == (None, None)
    assert cards.paused == status.collection_status("cryptopunks").paused  # paused for every collection


def test_the_api_summary_reads_the_same_counts(stored):
    punks, summary = status.collection_status("cryptopunks"), reads.summary("cryptopunks")
    assert summary["counts"]["items"] == punks.items == 3
    assert summary["counts"]["sales"] == punks.rows == 6
    assert summary["counts"]["rejected_sales"] == sum(punks.rejected.values()) == 3
    assert summary["sales_range"] == {"first": "2024-03-01T00:00:00Z", "last": "2024-03-06T00:00:00Z"}


def test_an_unknown_collection_is_not_found_and_not_made(engine):
    with pytest.raises(NotFound, match="unknown collection 'cryptopunk'"):
        status.collection_status("cryptopunk")
    with Session(engine) as session:
        assert session.exec(select(Collection)).all() == []
