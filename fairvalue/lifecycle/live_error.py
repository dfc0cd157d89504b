"""Live error: sales scored against the values published before them, the measure the retrain
policy and the monitor act on."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlmodel import Session

from fairvalue import kinds
from models import live
from models.metrics import valuation_metrics
from storage import snapshots
from storage.market import clean_sales_since
from storage.tables import Collection


def live_scored(session: Session, coll: Collection, since, statuses=(snapshots.PUBLISHED,),
                model_version_id: int | None = None) -> pd.DataFrame:
    """Sales since `since` (not suspected wash trades), each scored against the latest snapshot
    published before it (for a daily-priced collection: the card-days its snapshots valued,
    see fairvalue/kinds.py)."""
    if kinds.is_daily(coll):
        return kinds.DAILY.live_scored(session, coll, since, statuses, model_version_id)
    sales = clean_sales_since(session, coll, since)
    snaps = snapshots.published_times(session, coll, statuses, model_version_id, since)
    if sales.empty or snaps.empty:
        return pd.DataFrame(columns=["event_id", "ts", "item_key", "price", "fair_value", "p10", "p90"])
    rows = snapshots.values_of_items(session, snaps["snapshot_id"].tolist(), sales["item_key"].unique().tolist())
    scored, _ = live.score_sales(sales, snaps, rows)
    return scored


def live_metrics(scored: pd.DataFrame) -> dict[str, Any]:
    """valuation_metrics of scored sales; {"n": 0} for none."""
    if scored.empty:
        return {"n": 0}
    return valuation_metrics(scored["fair_value"].to_numpy(), scored["price"].to_numpy(),
                             scored["p10"].to_numpy(), scored["p90"].to_numpy())
