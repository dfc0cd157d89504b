"""Daily price observations (trading cards): idempotent upserts, rejections kept, reads for the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlmodel import Session, select

from models.daily import DailySeries
from models.price_rows import PriceObservation, ValidatedPrices
from storage.ingest import store_rejections
from storage.tables import Collection, DailyPrice, Item, utcnow
from storage.upsert import upsert


@dataclass
class PriceReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    repeated_in_batch: int = 0
    rejected: int = 0
    rejected_kept_before: int = 0  # of `rejected`, rows kept already (storage.ingest)
    reasons: Counter = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        """Rows written (new days and changed ones): what the published snapshot has not valued,
        so what asks for a nowcast (the collector's task, `ingest prices`, `cards collect`)."""
        return self.new + self.changed

    def add(self, other: PriceReport) -> None:
        for name in ("new", "changed", "unchanged", "repeated_in_batch", "rejected", "rejected_kept_before"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "repeated_in_batch": self.repeated_in_batch, "rejected": self.rejected,
                "rejected_kept_before": self.rejected_kept_before,
                "rejected_by_reason": dict(self.reasons)}


def card_keys(session: Session, collection: Collection, active_only: bool = False) -> dict[str, dict]:
    """item_key -> attributes of the collection's cards."""
    rows = session.exec(select(Item.item_key, Item.attributes).where(Item.collection_id == collection.id)).all()
    return {k: a for k, a in rows if not active_only or a.get("active", True)}


def stored_prices_before(session: Session, collection: Collection, observations: Iterable[PriceObservation],
                         window_days: int) -> dict[str, dict[date, float]]:
    """card -> day -> stored price of the observations' cards, from `window_days` before the first
    observation's day to the last one's (what models.price_rows.refuse_implausible compares with)."""
    obs = list(observations)
    if not obs:
        return {}
    first = min(o.day for o in obs) - timedelta(days=window_days)
    last = max(o.day for o in obs)
    stored: dict[str, dict[date, float]] = {}
    for key, day, price in session.exec(
            select(DailyPrice.item_key, DailyPrice.day, DailyPrice.price).where(
                DailyPrice.collection_id == collection.id, DailyPrice.item_key.in_(sorted({o.item_key for o in obs})),
                DailyPrice.day >= first, DailyPrice.day <= last)).all():
        stored.setdefault(key, {})[day] = float(price)
    return stored


def upsert_prices(session: Session, collection: Collection, observations: Iterable[PriceObservation],
                  source: str) -> PriceReport:
    """Insert new days, overwrite days whose price or volume changed, leave equal ones alone
    (so re-collecting the same history writes nothing). An observation without a volume says
    nothing about it: a stored day keeps its volume (the price API's history has none, and
    re-collecting a backfilled day wiped the file's volume and counted the day as changed)."""
    obs = list(observations)
    report = PriceReport()
    if not obs:
        return report
    items = sorted({o.item_key for o in obs})
    first, last = min(o.day for o in obs), max(o.day for o in obs)
    existing = {
        (k, d): (p, v) for k, d, p, v in session.exec(
            select(DailyPrice.item_key, DailyPrice.day, DailyPrice.price, DailyPrice.volume).where(
                DailyPrice.collection_id == collection.id, DailyPrice.item_key.in_(items),
                DailyPrice.day >= first, DailyPrice.day <= last)).all()
    }
    rows = []
    now = utcnow()
    for o in obs:
        before = existing.get((o.item_key, o.day))
        volume = before[1] if before is not None and o.volume is None else o.volume
        if before is None:
            report.new += 1
        elif before == (o.price, volume):
            report.unchanged += 1
            continue
        else:
            report.changed += 1
        rows.append({"collection_id": collection.id, "item_key": o.item_key, "day": o.day, "price": o.price,
                     "volume": volume, "source": source[:200], "updated_at": now})
    for start in range(0, len(rows), 2000):
        upsert(session, DailyPrice.__table__, rows[start:start + 2000], keys=("collection_id", "item_key", "day"))
    return report


def store_validated(session: Session, collection: Collection, batch: ValidatedPrices, origin: str) -> PriceReport:
    """Upsert the clean observations and keep every rejected row with its reason."""
    report = upsert_prices(session, collection, batch.clean, origin)
    report.repeated_in_batch = batch.repeated_in_batch
    report.rejected = len(batch.rejected)
    report.rejected_kept_before = report.rejected - store_rejections(session, collection, batch.rejected, origin)
    report.reasons.update(r.reason for r in batch.rejected)
    return report


def latest_day(session: Session, collection: Collection) -> date | None:
    from sqlalchemy import func

    return session.exec(select(func.max(DailyPrice.day)).where(DailyPrice.collection_id == collection.id)).one()


def load_daily_series(session: Session, collection: Collection) -> DailySeries:
    """Every card (with its category and whether it is active) and every stored daily price."""
    cards = card_keys(session, collection)
    items = pd.DataFrame({
        "item_key": list(cards),
        "category": [str(a.get("category", "")) for a in cards.values()],
        "active": [bool(a.get("active", True)) for a in cards.values()],
    }).set_index("item_key").sort_index()
    rows = session.exec(select(DailyPrice.day, DailyPrice.item_key, DailyPrice.price, DailyPrice.volume)
                        .where(DailyPrice.collection_id == collection.id)
                        .order_by(DailyPrice.day, DailyPrice.item_key)).all()
    prices = pd.DataFrame(rows, columns=["day", "item_key", "price", "volume"])
    prices["day"] = pd.to_datetime(prices["day"]).astype("datetime64[ns]")
    prices["price"] = prices["price"].astype(float)
    return DailySeries(items=items, prices=prices)
