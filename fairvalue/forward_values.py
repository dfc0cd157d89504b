"""Events (sales or asks) each with the value of the snapshot published last before it: the
join the live track records (fairvalue/track_record.py, fairvalue/signal_record.py) score on."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import tuple_
from sqlmodel import Session, select

from models import live
from models.times import naive_utc
from storage import snapshots
from storage.tables import Collection, NowcastRow, NowcastSnapshot

ROW_PAIRS_PER_QUERY = 1000


def published_values(session: Session, coll: Collection, events: pd.DataFrame,
                     t1: datetime) -> tuple[pd.DataFrame, dict]:
    """Each event (event_id, ts before t1, item_key, price: a sale or an ask) with the value of
    the snapshot published last before it: models.live.score_sales, reading only the rows of the
    (snapshot, item) pairs the events meet."""
    events = events.assign(ts=naive_utc(events["ts"]))
    snaps = pd.DataFrame(session.exec(select(NowcastSnapshot.id, NowcastSnapshot.published_at,
                                             NowcastSnapshot.model_version_id).where(
        NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status == snapshots.PUBLISHED,
        NowcastSnapshot.published_at.is_not(None), NowcastSnapshot.published_at < t1)).all(),
        columns=["snapshot_id", "published_at", "model_version_id"])
    snaps["published_at"] = naive_utc(snaps["published_at"])
    rows = pd.DataFrame(columns=["snapshot_id", "item_key", "fair_value", "p10", "p90"])
    if len(events) and len(snaps):
        # Which snapshot each event meets, first; then only those rows are read.
        ordered = snaps.sort_values(["published_at", "snapshot_id"])
        met = pd.merge_asof(events.sort_values("ts"), ordered, left_on="ts", right_on="published_at",
                            allow_exact_matches=False).dropna(subset=["snapshot_id"])
        pairs = sorted({(int(s), str(k)) for s, k in zip(met["snapshot_id"], met["item_key"], strict=True)})
        found = []
        for i in range(0, len(pairs), ROW_PAIRS_PER_QUERY):
            found += session.exec(select(NowcastRow.snapshot_id, NowcastRow.item_key, NowcastRow.fair_value,
                                         NowcastRow.p10, NowcastRow.p90).where(
                tuple_(NowcastRow.snapshot_id, NowcastRow.item_key).in_(pairs[i:i + ROW_PAIRS_PER_QUERY]))).all()
        rows = pd.DataFrame(found, columns=["snapshot_id", "item_key", "fair_value", "p10", "p90"])
    return live.score_sales(events, snaps, rows)
