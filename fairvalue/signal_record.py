"""The live track record of the signals, beside the valuations' (fairvalue/track_record.py).

Two kinds of signal are judged, forward only, each against the value published before it:
- at each scored sale, the signal its price got against that value, judged by what the item did
  next (models/signal_kpis.py; the same rules replay reports);
- at each ask (a priced listing event), whether it was a BUY against that value, judged by
  whether the ask was taken while it stood (models/ask_kpis.py).
The rules are in docs/backtest.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlmodel import Session, select

from fairvalue.answers import iso
from fairvalue.forward_values import published_values
from fairvalue.settings import Settings
from models.ask_kpis import ask_signal_kpis
from models.market_index import daily_index
from models.signal_kpis import signal_kpis
from models.times import hour_precision, naive_utc
from storage.tables import Collection, Listing, Sale

# The sales index reads up to 14 days of sales before a day (and an ask's fill known only to the
# hour may be stamped up to models.listings.SALE_TIME_SLACK before it).
INDEX_LOOKBACK = timedelta(days=14)
# An unsold ask is settled only this long after its end: a sale may be reported (a webhook retried,
# a file backfilled) a while after it happened, and would then turn it into taken.
SALE_REPORT_LAG = timedelta(days=1)


def window_sales(session: Session, coll: Collection, start: datetime, end: datetime) -> pd.DataFrame:
    """Every sale with start <= ts < end (ts, item_key, price, hour_precision, wash: a suspected
    wash trade), in the order stored: of sales that may have come at one moment, the first
    stored is judged first (models.backtest.next_sale)."""
    sales = pd.DataFrame(session.exec(select(Sale.ts, Sale.item_key, Sale.price, Sale.time_precision,
                                             Sale.wash_reason.is_not(None)).where(
        Sale.collection_id == coll.id, Sale.ts >= start, Sale.ts < end).order_by(Sale.ts, Sale.id)).all(),
        columns=["ts", "item_key", "price", "time_precision", "wash"])
    sales["ts"] = naive_utc(sales["ts"])
    sales["hour_precision"] = hour_precision(sales.pop("time_precision"))
    sales["wash"] = sales["wash"].astype(bool)
    return sales


def clean(sales: pd.DataFrame) -> pd.DataFrame:
    """ts, item_key, price of the sales that are not suspected wash trades: a wash trade is no
    price anyone could have bought or sold at."""
    return sales.loc[~sales["wash"], ["ts", "item_key", "price"]].reset_index(drop=True)


def signal_sales(session: Session, coll: Collection, t0: datetime, t1: datetime, settings: Settings) -> pd.DataFrame:
    """The sales both signal records of [t0, t1) read, in one query: from INDEX_LOOKBACK before t0
    (the sales index; an ask's fill known only to the hour too) to the horizon after t1."""
    return window_sales(session, coll, t0 - INDEX_LOOKBACK, t1 + timedelta(days=settings.signal_horizon_days))


def sale_signals(scored: pd.DataFrame, sales: pd.DataFrame, settings: Settings) -> dict[str, Any]:
    """models.signal_kpis on the scored sales of a window (fairvalue.track_record.forward_pairs):
    each sale's signal, judged by the item's next clean sale within the horizon, adjusted by the
    sales index. `sales`: signal_sales of the window."""
    sales = clean(sales)
    events = pd.DataFrame({"event_id": scored["event_id"], "timestamp": scored["ts"], "item_id": scored["item_key"],
                           "price": scored["price"], "fair_value": scored["fair_value"]})
    return signal_kpis(events, sales, daily_index(sales), horizon_days=settings.signal_horizon_days,
                       gain=settings.signal_gain, buy_below=settings.buy_below,
                       sell_above=settings.sell_above).as_dict()


def ask_signals(session: Session, coll: Collection, t0: datetime, t1: datetime, settings: Settings,
                as_of: datetime, sales: pd.DataFrame) -> dict[str, Any]:
    """models.ask_kpis on the asks listed in [t0, t1), each valued against the snapshot published
    last before it; counts says how many had no such value (as forward_pairs' counts), and
    complete_from, when the window starts before it, since when every ask is still stored.
    `sales`: signal_sales of the window. Any sale ends an item's offers, a suspected wash trade
    too (models/listings.py), one at an ask's instant or known only to an hour that ends after it too."""
    horizon = timedelta(days=settings.signal_horizon_days)
    listed = pd.DataFrame(session.exec(select(Listing.event_id, Listing.ts, Listing.item_key, Listing.price,
                                              Listing.source, Listing.expires_at).where(
        Listing.collection_id == coll.id, Listing.ts >= t0, Listing.ts < t1 + horizon)
        .order_by(Listing.ts, Listing.id)).all(), columns=["event_id", "ts", "item_key", "price", "source",
                                                           "expires_at"])
    listed["ts"] = naive_utc(listed["ts"])
    asks = listed[(listed["ts"] < naive_utc([t1])[0]) & listed["price"].notna()]
    valued, counts = published_values(session, coll, asks[["event_id", "ts", "item_key", "price"]], t1)
    counts = {"n_asks": counts["n_sales"], "n_valued": counts["n_scored"], "no_snapshot": counts["no_snapshot"],
              "no_row": counts["no_row"]}
    events = valued[["event_id", "ts", "item_key", "price", "fair_value"]].merge(
        asks[["event_id", "source", "expires_at"]], on="event_id", validate="one_to_one").rename(
        columns={"ts": "timestamp", "item_key": "item_id"})
    kpis = ask_signal_kpis(events, listed, sales, pd.Timestamp(naive_utc([as_of - SALE_REPORT_LAG])[0]),
                           horizon_days=settings.signal_horizon_days, buy_below=settings.buy_below)
    # Retention drops a replaced listing event past this (storage/retention.py): an older ask is
    # judged only if nothing replaced it, so the window's start is named when it reaches further.
    complete_from = as_of - timedelta(days=settings.listings_kept_days)
    return {"counts": counts, "complete_from": iso(complete_from) if t0 < complete_from else None,
            **kpis.as_dict()}
