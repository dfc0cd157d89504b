"""Load what the model may know from the database into a MarketData."""

from __future__ import annotations

import pandas as pd
from sqlmodel import Session, select

from models.features import MarketData
from storage.tables import Collection, Item, MarketDay, Sale


def _naive_utc(series: pd.Series) -> pd.Series:
    ts = pd.to_datetime(series, utc=True)
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")


def load_market_data(session: Session, collection: Collection) -> MarketData:
    item_rows = session.exec(
        select(Item.item_key, Item.item_type, Item.attributes).where(Item.collection_id == collection.id)
    ).all()
    items = pd.DataFrame(
        {
            "item_key": [r[0] for r in item_rows],
            "item_type": [r[1] for r in item_rows],
            "accessory_count": [int(r[2].get("accessory_count", 0)) for r in item_rows],
            "accessories": [list(r[2].get("accessories", [])) for r in item_rows],
        }
    ).set_index("item_key")
    items = items.loc[sorted(items.index, key=_item_order)]

    sale_rows = session.exec(
        select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price)
        .where(Sale.collection_id == collection.id)
        .order_by(Sale.ts, Sale.id)
    ).all()
    sales = pd.DataFrame(sale_rows, columns=["event_id", "ts", "item_key", "price"])
    sales["ts"] = _naive_utc(sales["ts"]) if len(sales) else sales["ts"].astype("datetime64[ns]")
    sales["price"] = sales["price"].astype(float)

    day_rows = session.exec(
        select(MarketDay.day, MarketDay.floor, MarketDay.eth_usd)
        .where(MarketDay.collection_id == collection.id)
        .order_by(MarketDay.day)
    ).all()
    market = pd.DataFrame(day_rows, columns=["day", "floor", "eth_usd"])
    market["day"] = pd.to_datetime(market["day"]).astype("datetime64[ns]")
    market[["floor", "eth_usd"]] = market[["floor", "eth_usd"]].astype(float)
    return MarketData(items=items, sales=sales, market=market)


def _item_order(key: str) -> tuple[int, str]:
    """Numeric keys in numeric order (punk 2 before punk 10), others after."""
    return (int(key), "") if key.isdigit() else (1 << 62, key)
