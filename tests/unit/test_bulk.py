"""The SQLite path of storage.bulk.copy_csv (the embedded setup): typed values, NULLs, times."""

from datetime import UTC, datetime

from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel, select

import storage.tables  # noqa: F401  (registers the tables)
from storage.bulk import copy_csv
from storage.tables import NowcastRow


def test_csv_rows_land_typed_on_sqlite():
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    text = "1,7804,101.5,80,130,HOLD,4200,2021-03-11T20:56:00Z\n1,42,9.25,8,11,BUY,,\n"
    columns = ["snapshot_id", "item_key", "fair_value", "p10", "p90", "signal", "last_price", "last_sale_at"]
    with Session(engine) as session:
        assert copy_csv(session, "nowcast_rows", columns, text) == 2
        session.commit()
        rows = {r.item_key: r for r in session.exec(select(NowcastRow))}
    assert rows["7804"].fair_value == 101.5 and rows["7804"].last_price == 4200.0
    assert rows["7804"].last_sale_at.replace(tzinfo=UTC) == datetime(2021, 3, 11, 20, 56, tzinfo=UTC)
    assert rows["42"].last_price is None and rows["42"].last_sale_at is None and rows["42"].signal == "BUY"
