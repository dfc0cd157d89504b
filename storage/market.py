"""Load what the model may know from the database into a MarketData."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import func, text
from sqlmodel import Session, select

from models.features import ITEM_ATTRIBUTES, MarketData, attribute_text, excluded_frame
from models.listings import LISTING_COLUMNS, LISTING_SALE_COLUMNS, REPLAY_LISTING_COLUMNS, ListingBook, latest_moment
from models.times import HOUR, hour_precision, naive_utc
from models.validation import item_key_of, sale_time_of
from storage.tables import Collection, Item, Listing, MarketDay, MarketDayRevision, RejectedSale, Sale

EVERY_SALE_STORED = datetime(9999, 12, 31, tzinfo=UTC)  # load_market_data's stored_by when none is given


def _seen(xact_column: str, snapshot: str) -> str:
    """SQL: the transaction in `xact_column` (an xid8 stored as bigint) is visible in `snapshot`."""
    return f"pg_visible_in_snapshot({xact_column}::text::xid8, CAST({snapshot} AS pg_snapshot))"


def _stored_in(snapshot: str) -> str:
    """SQL: a row whose storing transaction `snapshot` saw (rows from before the column: every one)."""
    return f"(stored_xact IS NULL OR {_seen('stored_xact', snapshot)})"


# Which sales a PostgreSQL snapshot (pg_current_snapshot()'s text) read, and as what: a sale whose
# storing transaction it saw, clean unless the transaction that flagged it as a wash trade was
# seen too. Rows from before migration 0010 (null ids) count as stored, and flagged, before any
# snapshot. Exact where a time stamp is not: a batch stamped before the read may commit after it.
STORED_IN_SNAPSHOT = _stored_in("%(snapshot)s")
CLEAN_IN_SNAPSHOT = (f"(wash_reason IS NULL OR (wash_flagged_xact IS NOT NULL AND "
                     f"NOT {_seen('wash_flagged_xact', '%(snapshot)s')}))")


def current_snapshot(session: Session) -> str | None:
    """The snapshot the session's transaction reads under (PostgreSQL; None elsewhere). Taken as
    the first statement of a REPEATABLE READ transaction (storage.db.consistent_reads), it is
    the one every later statement of that transaction reads under."""
    if session.connection().dialect.name != "postgresql":
        return None
    return session.exec(text("SELECT pg_current_snapshot()::text")).one()[0]


def stored_after(snapshot: str):
    """A condition on sales: stored by a transaction `snapshot` did not see (what a nowcast
    under it did not read). Every transaction before the snapshot's xmin was seen, so only ids
    from there on are looked at, a range of ix_sales_stored_xact rather than every sale."""
    return text("stored_xact >= pg_snapshot_xmin(CAST(:snapshot AS pg_snapshot))::text::bigint AND NOT "
                + _seen("stored_xact", ":snapshot")).bindparams(snapshot=snapshot)


def from_epoch_microseconds(values) -> np.ndarray:
    """Sale times read on PostgreSQL as integer microseconds since the epoch, as naive UTC."""
    return np.asarray(values).astype("int64").astype("datetime64[us]").astype("datetime64[ns]")


def load_market_data(session: Session, collection: Collection, with_excluded: bool = False,
                     stored_by: datetime | None = None, read_under: str | None = None,
                     listings_at: datetime | None = None) -> MarketData:
    """What the model may know: every item, the sales that are not suspected wash trades, the
    daily inputs; with `with_excluded`, also the sales left out and why (for reports); with
    `stored_by`, only the sales and market days stored by then (what a snapshot read: its
    data_read_at); with `read_under` (PostgreSQL), the sales and market days as a read under that
    pg_snapshot saw them (its data_snapshot, exact where data_read_at is not); with
    `listings_at`, the listings that decide the asks open at that moment (load_listings)."""
    if stored_by is not None and stored_by.tzinfo is None:  # SQLite hands back naive UTC
        stored_by = stored_by.replace(tzinfo=UTC)
    if session.connection().dialect.name == "postgresql":
        items, sales = _items_and_sales_postgresql(session, collection, stored_by, read_under)
    elif read_under is not None:
        raise ValueError("a pg_snapshot is read only on PostgreSQL")
    else:
        items, sales = _items_and_sales(session, collection, stored_by)
    items = items.set_index("item_key")
    items = items.loc[sorted(items.index, key=item_order)]
    sales["price"] = sales["price"].astype(float)
    return MarketData(items=items, sales=sales, market=_market_days(session, collection, stored_by, read_under),
                      excluded=load_excluded(session, collection) if with_excluded else None,
                      listings=None if listings_at is None else load_listings(session, collection, listings_at,
                                                                              stored_by))


def clean_sales_since(session: Session, collection: Collection, since) -> pd.DataFrame:
    """Sales (event_id, ts naive UTC, item_key, price) from `since` on, without the suspected wash trades."""
    sales = pd.DataFrame(
        session.exec(select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price)
                     .where(Sale.collection_id == collection.id, Sale.ts >= since, Sale.wash_reason.is_(None))).all(),
        columns=["event_id", "ts", "item_key", "price"])
    sales["ts"] = naive_utc(sales["ts"])
    return sales


def _market_days(session: Session, collection: Collection, stored_by: datetime | None,
                 read_under: str | None) -> pd.DataFrame:
    """The daily inputs, each day as last stored; with `read_under` or `stored_by`, each day's
    latest revision that snapshot saw or stored by then, so a floor corrected after a nowcast
    leaves its explanation reading the floor the nowcast read."""
    if read_under is None and stored_by is None:
        days = (select(MarketDay.day, MarketDay.floor, MarketDay.eth_usd)
                .where(MarketDay.collection_id == collection.id).order_by(MarketDay.day))
    else:
        revision = MarketDayRevision
        seen = (text(_stored_in(":snapshot")).bindparams(snapshot=read_under) if read_under is not None
                else revision.stored_at <= stored_by)
        latest = (select(func.max(revision.id)).where(revision.collection_id == collection.id, seen)
                  .group_by(revision.day))
        days = (select(revision.day, revision.floor, revision.eth_usd)
                .where(revision.id.in_(latest)).order_by(revision.day))
    market = pd.DataFrame(session.exec(days).all(), columns=["day", "floor", "eth_usd"])
    market["day"] = pd.to_datetime(market["day"]).astype("datetime64[ns]")
    market[["floor", "eth_usd"]] = market[["floor", "eth_usd"]].astype(float)
    return market


def load_listings(session: Session, collection: Collection, at: datetime,
                  stored_by: datetime | None = None) -> ListingBook:
    """What decides the asks open at `at` (models.listings.open_asks), and nothing more, so a
    nowcast reads a bounded book however long the listings' history: each item's latest listing
    event before `at` per source, and the latest sale before `at` of each listed item per time
    precision, suspected wash trades included (an hour-precision sale counts at its hour's
    end). With `stored_by`, only rows stored by then."""
    seen = [Listing.collection_id == collection.id, Listing.ts < at]
    if stored_by is not None:
        seen.append(Listing.ingested_at <= stored_by)
    ranked = select(Listing.item_key, Listing.source, Listing.ts, Listing.price, Listing.expires_at,
                    func.row_number().over(partition_by=(Listing.item_key, Listing.source),
                                           order_by=(Listing.ts.desc(), Listing.id.desc())).label("newest")
                    ).where(*seen).subquery()
    rows = session.execute(select(*(ranked.c[name] for name in LISTING_COLUMNS)).where(ranked.c.newest == 1)
                           .order_by(ranked.c.ts)).all()
    if not rows:
        return ListingBook.empty()
    events = pd.DataFrame(rows, columns=list(LISTING_COLUMNS))
    events["ts"] = naive_utc(events["ts"])
    events["expires_at"] = naive_utc(events["expires_at"])
    events["price"] = events["price"].astype(float)
    sold = [Sale.collection_id == collection.id, Sale.ts < at,
            Sale.item_key.in_(select(Listing.item_key).where(*seen).distinct())]
    if stored_by is not None:
        sold.append(Sale.ingested_at <= stored_by)
    sales = pd.DataFrame(session.execute(select(Sale.item_key, func.max(Sale.ts), Sale.time_precision).where(*sold)
                                         .group_by(Sale.item_key, Sale.time_precision)).all(),
                         columns=["item_key", "ts", "time_precision"])
    sales["ts"] = naive_utc(sales["ts"])
    sales["latest"] = latest_moment(sales["ts"], (sales["time_precision"] == HOUR).to_numpy())
    return ListingBook(events, sales[list(LISTING_SALE_COLUMNS)])


def load_listing_events(session: Session, collection: Collection) -> pd.DataFrame:
    """Every stored listing event (models.listings.REPLAY_LISTING_COLUMNS): a replay's history."""
    rows = session.execute(select(*(getattr(Listing, name) for name in REPLAY_LISTING_COLUMNS))
                           .where(Listing.collection_id == collection.id).order_by(Listing.ts, Listing.id)).all()
    events = pd.DataFrame(rows, columns=list(REPLAY_LISTING_COLUMNS))
    events["ts"] = naive_utc(events["ts"])
    events["expires_at"] = naive_utc(events["expires_at"])
    events["price"] = events["price"].astype(float)
    return events


def load_excluded(session: Session, collection: Collection) -> pd.DataFrame:
    """The sales the model never sees, with why: stored suspected wash trades, and rows refused
    at ingest that name a time (a row without one cannot be placed in a report's window). Each
    refused event once (it may be kept in several shapes, one per file that sent it), and none
    that is stored as a sale after all (a conflicting second report of it was refused)."""
    flagged = [(*row, precision == HOUR) for *row, precision in session.exec(
        select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price, Sale.wash_reason, Sale.time_precision)
        .where(Sale.collection_id == collection.id, Sale.wash_reason.is_not(None))
    ).all()]
    stored = select(Sale.id).where(Sale.collection_id == collection.id, Sale.event_id == RejectedSale.event_id)
    refused = session.exec(
        select(RejectedSale.event_id, RejectedSale.row, RejectedSale.reason)
        .where(RejectedSale.collection_id == collection.id, ~stored.exists())
    ).all()
    rows, seen = list(flagged), set()
    for event_id, row, reason in refused:
        ts = sale_time_of(row)
        if ts is None or (event_id is not None and event_id in seen):
            continue
        seen.add(event_id)
        rows.append((event_id, ts, item_key_of(row), None, reason))
    return excluded_frame(rows)


def item_frame(rows) -> pd.DataFrame:
    """Items from (item_key, item_type, attributes as a dict) rows, for both loaders: an absent
    or null accessory_count is 0, accessories a list, ITEM_ATTRIBUTES their text or ""
    (attribute_text)."""
    keys, kinds, counts, accessories, levels = [], [], [], [], {name: [] for name in ITEM_ATTRIBUTES}
    for key, kind, attributes in rows:
        keys.append(key)
        kinds.append(kind)
        count = attributes.get("accessory_count")
        counts.append(0 if count is None else int(count))
        accessories.append(list(attributes.get("accessories") or []))
        for name, column in levels.items():
            column.append(attribute_text(attributes.get(name)))
    return pd.DataFrame({"item_key": keys, "item_type": kinds, "accessory_count": counts,
                         "accessories": accessories} | levels)


def _items_and_sales(session: Session, collection: Collection,
                     stored_by: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    item_rows = session.exec(
        select(Item.item_key, Item.item_type, Item.attributes).where(Item.collection_id == collection.id)
    ).all()
    items = item_frame(item_rows)
    sale_rows = session.exec(
        select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price, Sale.time_precision)
        .where(Sale.collection_id == collection.id, Sale.wash_reason.is_(None),
               Sale.ingested_at <= (stored_by or EVERY_SALE_STORED))
        .order_by(Sale.ts, Sale.id)
    ).all()
    sales = pd.DataFrame(sale_rows, columns=["event_id", "ts", "item_key", "price", "time_precision"])
    sales["ts"] = naive_utc(sales["ts"])
    sales["hour_precision"] = hour_precision(sales.pop("time_precision"))
    return items, sales


def _items_and_sales_postgresql(session: Session, collection: Collection, stored_by: datetime | None = None,
                                read_under: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same frames through the driver's cursor: the ORM's rows, its JSON decoding and
    per-row timezone-aware datetimes were most of a nowcast's load time. PostgreSQL gives times
    as integer microseconds since the epoch (exact)."""
    # Binary results: the driver decodes integers, doubles and booleans without parsing text (the
    # same values); the bundled market's 15,840 sales came in half the time (0.058 -> 0.031 s).
    cursor = session.connection().connection.driver_connection.cursor(binary=True)
    # The attributes as their stored text, decoded here: PostgreSQL's `->` on a json column parses
    # the whole document again for each key asked, and six of them per item were 0.10 s of a 10k
    # nowcast's load, against 0.01 s for the text and 0.05 s for json.loads (bench/nowcast.py).
    item_rows = cursor.execute("SELECT item_key, item_type, attributes::text FROM items WHERE collection_id = %s",
                               (collection.id,)).fetchall()
    items = item_frame((key, kind, json.loads(attributes)) for key, kind, attributes in item_rows)
    read = f"{STORED_IN_SNAPSHOT} AND {CLEAN_IN_SNAPSHOT}" if read_under else "wash_reason IS NULL"
    sale_rows = cursor.execute(
        "SELECT event_id, (EXTRACT(EPOCH FROM ts) * 1000000)::bigint, item_key, price, "  # nosec B608: fixed text
        f"time_precision = %(hour)s FROM sales WHERE collection_id = %(collection)s AND {read} "
        "AND ingested_at <= %(stored_by)s ORDER BY ts, id",
        {"hour": HOUR, "collection": collection.id, "stored_by": stored_by or EVERY_SALE_STORED,
         "snapshot": read_under},
    ).fetchall()
    sales = pd.DataFrame(sale_rows, columns=["event_id", "ts", "item_key", "price", "hour_precision"])
    sales["ts"] = from_epoch_microseconds(sales["ts"].to_numpy())
    return items, sales


def item_order(key: str) -> tuple[int, str]:
    """Numeric keys in numeric order (punk 2 before punk 10), others after: the order a nowcast
    values and writes the items in (storage.snapshots.snapshot_values reads them back in it)."""
    return (int(key), "") if key.isdigit() else (1 << 62, key)
