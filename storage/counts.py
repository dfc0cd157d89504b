"""Counts of what a collection stores that more than one read shows: its items, its sales or
daily prices (with the first and last), and the refused rows kept in rejected_sales by reason
(storage/ingest.py and storage/prices.py keep them). The API's summary (fairvalue/reads.py) and
`fairvalue status` (fairvalue/status.py) both call these, so each count is defined once."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func
from sqlmodel import Session, select

from storage.tables import Collection, DailyPrice, Item, RejectedSale, Sale


def item_count(session: Session, coll: Collection) -> int:
    return session.exec(select(func.count()).select_from(Item).where(Item.collection_id == coll.id)).one()


def sales_span(session: Session, coll: Collection) -> tuple[int, datetime | None, datetime | None]:
    """The stored sales (suspected wash trades too), the first's and the last's time."""
    return tuple(session.exec(select(func.count(), func.min(Sale.ts), func.max(Sale.ts))
                              .where(Sale.collection_id == coll.id)).one())


def prices_span(session: Session, coll: Collection) -> tuple[int, date | None, date | None]:
    """The stored daily prices (a daily-priced collection's rows), the first and the last day."""
    return tuple(session.exec(select(func.count(), func.min(DailyPrice.day), func.max(DailyPrice.day))
                              .where(DailyPrice.collection_id == coll.id)).one())


def rejected_by_reason(session: Session, coll: Collection) -> dict[str, int]:
    """The refused sales or prices kept, by reason."""
    return dict(session.exec(select(RejectedSale.reason, func.count()).where(RejectedSale.collection_id == coll.id)
                             .group_by(RejectedSale.reason)).all())
