"""A price row without a volume leaves the stored volume of its day alone (storage.prices.upsert_prices):
the price API's history has no volumes, and re-collecting a day backfilled from a file with its
volume wiped the volume and counted the day as changed."""

from __future__ import annotations

from datetime import date

from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel, select

import storage.tables  # noqa: F401  (registers the tables)
from models.price_rows import PriceObservation
from storage.prices import upsert_prices
from storage.tables import Collection, DailyPrice

DAY = date(2025, 7, 1)


def stored(session: Session, coll: Collection) -> tuple[float, int | None]:
    row = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id)).one()
    return row.price, row.volume


def test_a_missing_volume_keeps_the_stored_one_and_an_identical_resend_is_unchanged():
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        coll = Collection(slug="cards", name="cards", kind="daily_prices", currency="USD")
        session.add(coll)
        session.flush()

        def put(price: float, volume: int | None) -> tuple[int, int, int]:
            report = upsert_prices(session, coll, [PriceObservation("a", DAY, price, volume)], "test")
            session.flush()
            return report.new, report.changed, report.unchanged

        assert put(10.0, 5) == (1, 0, 0)
        assert put(10.0, None) == (0, 0, 1) and stored(session, coll) == (10.0, 5)  # was (0, 1, 0) and volume None
        assert put(11.0, None) == (0, 1, 0) and stored(session, coll) == (11.0, 5)  # a new price, the volume kept
        assert put(11.0, 7) == (0, 1, 0) and stored(session, coll) == (11.0, 7)  # a new volume is stored
        assert put(11.0, 0) == (0, 1, 0) and stored(session, coll) == (11.0, 0)  # zero is a volume, not none
        assert put(11.0, 0) == (0, 0, 1)
