"""The database gives the model the same items as the bundled files: both loaders (the
driver's cursor on PostgreSQL, the ORM elsewhere) against the file path, attributes included."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlmodel import select

from fairvalue import pipeline
from fairvalue.settings import get_settings
from models.features import ITEM_ATTRIBUTES
from storage import market
from storage.bundled import market_data_from_files
from storage.db import session_scope

pytestmark = pytest.mark.integration


def test_both_database_loaders_give_the_files_items_with_their_attributes(seeded):
    settings = get_settings()
    bundled = settings.data_dir / settings.collection
    files = market_data_from_files(bundled / "punks.csv", [], [], [], settings.min_floor_fraction).items
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        loaded = market.load_market_data(session, coll).items
        orm_items, _ = market._items_and_sales(session, coll)
    orm_items = orm_items.set_index("item_key").loc[loaded.index]
    columns = ["item_type", "accessory_count", "accessories", *ITEM_ATTRIBUTES]
    assert files.loc[loaded.index, "gender"].value_counts().to_dict() == {"Male": 6160, "Female": 3840}
    for frame in (loaded, orm_items):
        pd.testing.assert_frame_equal(frame[columns], files.loc[loaded.index, columns], check_dtype=False)


def test_an_attribute_that_is_not_text_is_no_level_for_either_loader(database):
    """Another source may store a number, a boolean or a list: both loaders read it as none,
    where the database's ->> and Python's str() would spell it differently."""
    from storage.tables import Item

    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, get_settings().for_collection("attribute-types"))
        for key, attributes in [("1", {"gender": True, "skin_tone": 1.50}), ("2", {"gender": ["Female"]}),
                                ("3", {"gender": "Female", "skin_tone": "Dark"})]:
            if session.get(Item, (coll.id, key)) is None:
                session.add(Item(collection_id=coll.id, item_key=key, item_type="Human", attributes=attributes))
        session.commit()
        loaded = market.load_market_data(session, coll).items
        orm_items, _ = market._items_and_sales(session, coll)
    orm_items = orm_items.set_index("item_key").loc[loaded.index]
    for frame in (loaded, orm_items):
        assert frame["gender"].tolist() == ["", "", "Female"] and frame["skin_tone"].tolist() == ["", "", "Dark"]


def test_both_database_loaders_mark_the_sales_the_files_know_only_to_the_hour(seeded):
    """The second bundled source gives the hour, not the minute (models.times): its sales, and
    only those, carry hour_precision from the files and from either database loader (which read
    the time_precision ingest stored with each sale)."""
    settings = get_settings()
    bundled = settings.data_dir / settings.collection
    files = market_data_from_files(bundled / "punks.csv", [bundled / "sales.csv"], [bundled / "floor.csv"],
                                   [bundled / "eth_usd.csv"], settings.min_floor_fraction
                                   ).sales.set_index("event_id")["hour_precision"]
    raw = pd.read_csv(bundled / "sales.csv", usecols=["event_id", "source"]).set_index("event_id")["source"]
    assert (files == (raw.reindex(files.index) == "cryptopunks-vis")).all()
    assert 6000 < files.sum() < len(files) - 9000  # both sources are there
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        loaded = market.load_market_data(session, coll).sales.set_index("event_id")["hour_precision"]
        _, orm_sales = market._items_and_sales(session, coll)
    for frame in (loaded, orm_sales.set_index("event_id")["hour_precision"]):
        assert files.index.isin(frame.index).all()  # the seeded database holds every clean bundled sale
        pd.testing.assert_series_equal(frame.loc[files.index].astype(bool), files, check_names=False)


def test_the_migration_fills_the_time_precision_of_the_sales_a_database_already_holds(tmp_path):
    """An upgrade from before sales.time_precision marks the stored sales of an hour-precision
    source as ingest would have, so an upgraded database trains as a fresh one."""
    import sqlalchemy as sa

    from storage.migrate import upgrade
    from tests.realparts import database_before

    url, engine = database_before("0007", tmp_path, [
        {"event_id": event_id, "ts": "2021-06-01T10:05:00", "source": source}
        for event_id, source in (("on-chain", "punks.market"), ("hourly", "cryptopunks-vis"), ("bare", ""))])
    upgrade(url, "head")
    with engine.connect() as conn:
        precisions = dict(conn.execute(sa.text("SELECT event_id, time_precision FROM sales")).all())
    engine.dispose()
    assert precisions == {"on-chain": "second", "hourly": "hour", "bare": "second"}


def test_a_declared_time_precision_is_stored_and_read_back_by_both_loaders(database):
    """A sale may declare that only its hour is known, whatever its source; both loaders read
    what ingest stored, not the source's name."""
    from storage.tables import Item, Sale

    settings = get_settings().for_collection("declared-precision")
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        for key in ("1", "2", "3"):
            if session.get(Item, (coll.id, key)) is None:
                session.add(Item(collection_id=coll.id, item_key=key, item_type="Human", attributes={}))
    sales = [{"event_id": "declared-hour", "timestamp": "2021-06-01T10:05:00Z", "item_id": "1", "price": 10,
              "source": "feed", "time_precision": "hour"},
             {"event_id": "declared-second", "timestamp": "2021-06-01T10:06:00Z", "item_id": "2", "price": 10,
              "source": "cryptopunks-vis", "time_precision": "second"},
             {"event_id": "undeclared", "timestamp": "2021-06-01T10:07:00Z", "item_id": "3", "price": 10,
              "source": "cryptopunks-vis"}]
    report = pipeline.ingest_sales_rows(sales, "test", settings)
    assert report.accepted + report.duplicate == 3, report
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        stored = dict(session.exec(select(Sale.event_id, Sale.time_precision)
                                   .where(Sale.collection_id == coll.id)).all())
        loaded = market.load_market_data(session, coll).sales.set_index("event_id")["hour_precision"]
        _, orm_sales = market._items_and_sales(session, coll)
    assert stored == {"declared-hour": "hour", "declared-second": "second", "undeclared": "hour"}
    expected = {"declared-hour": True, "declared-second": False, "undeclared": True}
    for frame in (loaded, orm_sales.set_index("event_id")["hour_precision"]):
        assert frame.astype(bool).to_dict() == expected


def test_the_migration_keeps_the_market_days_a_database_already_holds_as_read_by_every_snapshot(tmp_path):
    """An upgrade from before market_day_revisions makes each stored day its first revision,
    stored before any snapshot: an explanation of an older snapshot reads them as it did."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from sqlmodel import Session

    from storage.migrate import upgrade
    from storage.tables import Collection
    from tests.realparts import database_before

    url, engine = database_before("0010", tmp_path, [])
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO market_days (collection_id, day, floor, eth_usd) VALUES "
                             "(1, '2021-12-30', 61.1, 3700.0), (1, '2021-12-31', 56.6, NULL)"))
    upgrade(url, "head")
    with Session(engine) as session:
        coll = session.get(Collection, 1)
        long_ago = market.load_market_data(session, coll, stored_by=datetime(1999, 1, 1, tzinfo=UTC)).market
        now = market.load_market_data(session, coll).market
    engine.dispose()
    pd.testing.assert_frame_equal(long_ago, now)
    assert now["floor"].tolist() == [61.1, 56.6] and now["eth_usd"].isna().tolist() == [False, True]


def test_an_upgrade_stores_the_punks_first_day(tmp_path):
    """A punks database made before collections.first_day holds the punks' first day after the
    upgrade, so its sales before 2017-06-22 are still refused (the check reads the stored row now)."""
    import sqlalchemy as sa

    from storage.migrate import upgrade
    from tests.realparts import database_before

    url, engine = database_before("0013", tmp_path, [])
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO collections (id, slug, name, kind, currency, created_at) "
                             "VALUES (2, 'cards', 'Pokémon cards', 'daily_prices', 'USD', '2021-01-01')"))
    upgrade(url, "head")
    with engine.connect() as conn:
        first_days = dict(conn.execute(sa.text("SELECT slug, first_day FROM collections")).all())
    engine.dispose()
    # The cards' comes from their universe file at the next `cards load`.
    assert first_days == {"cryptopunks": "2017-06-22", "cards": None}
