"""Flag suspected wash trades as sales are stored (the rules are in models/wash.py).

New sales can change flags in two ways: a new sale may itself look like a wash trade, and a
sale that arrives late may be the evidence that makes a later, stored sale one (the first leg
of a round trip, a pair's earlier trade). So the sales read around a batch are the window
before its first sale to the window after its last, and every flag found is merged into the
stored one by `strongest`: evidence only ever adds up, and re-sending a batch changes nothing.

What this reads is enough for exactly the sales a new one can affect: those of its item, and
those between two of the batch's parties. A sale outside that set may look less suspicious from the partial
history read here than it is; `strongest` keeps its stored flag.

Concurrent batches: a transaction cannot see another's uncommitted sales, so two batches stored
at the same moment, each holding one leg of a round trip, would each find the other leg missing
and neither would be flagged. On PostgreSQL the flagging of a collection's batches is therefore
serialised by a transaction-level advisory lock taken before the window is read: the second
batch reads only after the first has committed (READ COMMITTED reads what is committed when the
statement starts) and so sees its legs. The lock is held from there to the commit. A batch takes
it once, after all its inserts of sales, and nothing it does after that waits on a transaction
that is itself waiting for the lock, so the lock cannot deadlock. Two runs of bench/ingest.py
before and after it were within each other's spread (README, benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import and_, func, or_, select, text
from sqlmodel import Session

from models.times import naive_utc
from models.validation import CleanSale
from models.wash import WINDOW, is_party, strongest, wash_reasons
from storage.market import from_epoch_microseconds
from storage.tables import Collection, Sale

# A batch up to this size reads only the sales of its items and parties; a larger one (a file,
# the seed) reads every sale of its time range rather than send thousands of keys.
NARROW_BATCH = 500
SET_REASON = text("UPDATE sales SET wash_reason = :reason WHERE id = :sale_id")
# On PostgreSQL the first flag also names its transaction, so a snapshot read before it still
# reads the sale as clean, as it did (storage/market.py).
SET_REASON_PG = text("UPDATE sales SET wash_reason = :reason, wash_flagged_xact = CASE WHEN wash_reason IS NULL "
                     "THEN pg_current_xact_id()::text::bigint ELSE wash_flagged_xact END WHERE id = :sale_id")
# pg_advisory_xact_lock(namespace, collection id): one lock per collection's wash flags.
FLAG_LOCK_NAMESPACE = 0x5A5F  # any fixed int4: the two-key form is a key space apart from the beat's lock
FLAG_LOCK = text("SELECT pg_advisory_xact_lock(:namespace, :collection)")


# On PostgreSQL the window is read straight from the driver's cursor, times as integer
# microseconds: SQLAlchemy's Row objects and one datetime object per row, which pandas then
# inferred column by column, were about half of flagging a 5,000-sale batch (cProfile, bench/ingest.py data).
WINDOW_COLUMNS = ["id", "event_id", "ts", "item_key", "price", "seller", "buyer", "wash_reason"]
AROUND_PG = ("SELECT id, event_id, (EXTRACT(EPOCH FROM ts) * 1000000)::bigint, item_key, price, seller, buyer, "
             "wash_reason FROM sales WHERE collection_id = %(collection)s AND ts >= %(low)s AND ts <= %(high)s")
AROUND_PG_NARROW = AROUND_PG + \
    " AND (item_key = ANY(%(items)s) OR (seller = ANY(%(parties)s) AND buyer = ANY(%(parties)s)))"


def stored_window(connection, collection_id: int, low, high, items=None, parties=None) -> pd.DataFrame:
    """The stored sales of [low, high] (aware times), wash trades included (only those of `items`
    or between two of `parties`, when given): WINDOW_COLUMNS, ts as naive UTC. What the flags of
    new sales are found against, at ingest and in a replay of extra files (stored_sales_around)."""
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        params = {"collection": collection_id, "low": low, "high": high, "items": items, "parties": parties}
        rows = cursor.execute(AROUND_PG if items is None else AROUND_PG_NARROW, params).fetchall()
        frame = pd.DataFrame(rows, columns=WINDOW_COLUMNS)
        frame["ts"] = from_epoch_microseconds(frame["ts"].to_numpy())
        return frame
    sales = Sale.__table__
    query = select(*(sales.c[name] for name in WINDOW_COLUMNS)).where(
        sales.c.collection_id == collection_id, sales.c.ts >= low, sales.c.ts <= high)
    if items is not None:
        query = query.where(or_(sales.c.item_key.in_(items),
                                and_(sales.c.seller.in_(parties), sales.c.buyer.in_(parties))))
    frame = pd.DataFrame([tuple(row) for row in connection.execute(query)], columns=WINDOW_COLUMNS)
    frame["ts"] = naive_utc(frame["ts"])
    return frame


def stored_sales_around(session: Session, collection: Collection, low: pd.Timestamp,
                        high: pd.Timestamp) -> pd.DataFrame:
    """stored_window of [low, high] given as naive UTC, in time order: the evidence a replay's
    extra sales are flagged against, as ingest would flag them (evaluation.load_market)."""
    frame = stored_window(session.connection(), collection.id, low.tz_localize("UTC").to_pydatetime(),
                          high.tz_localize("UTC").to_pydatetime())
    return frame.sort_values(["ts", "id"], kind="stable").reset_index(drop=True)


def flag_wash_trades(session: Session, collection: Collection, new_sales: Sequence[CleanSale]) -> None:
    """Set or strengthen the wash flag of the sales these new ones bear on."""
    relevant = [s for s in new_sales if is_party(s.seller) and is_party(s.buyer)]
    if not relevant:  # a sale without both parties is never flagged and is no one's evidence
        return
    low, high = min(s.ts for s in relevant) - WINDOW, max(s.ts for s in relevant) + WINDOW
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":  # see the module docstring: concurrent batches
        connection.execute(FLAG_LOCK, {"namespace": FLAG_LOCK_NAMESPACE, "collection": collection.id})
    if len(relevant) <= NARROW_BATCH:
        # The sales a new one can bear on: its item's (round trips) and its parties' trades with
        # each other (repeated pairs). ix_sales_item_ts and ix_sales_parties serve a window holding
        # many sales; on the bench's 50,000 the planner read the window by time (EXPLAIN, 0.9 ms).
        frame = stored_window(connection, collection.id, low, high, sorted({s.item_key for s in relevant}),
                              sorted({a for s in relevant for a in (s.seller, s.buyer)}))
    else:
        frame = stored_window(connection, collection.id, low, high)
    if frame.empty:
        return
    found = wash_reasons(frame)
    changes = []
    for sale_id, stored_reason, reason in zip(frame["id"], frame["wash_reason"], found, strict=True):
        merged = strongest(stored_reason, reason)
        if merged != stored_reason:
            changes.append({"sale_id": int(sale_id), "reason": merged})
    if changes:
        connection.execute(SET_REASON_PG if dialect == "postgresql" else SET_REASON, changes)


def kept_out_by_reason(session: Session, collection: Collection) -> dict[str, int]:
    """The stored sales flagged as suspected wash trades (the model leaves them out), by reason."""
    return dict(session.execute(select(Sale.wash_reason, func.count()).where(
        Sale.collection_id == collection.id, Sale.wash_reason.is_not(None)).group_by(Sale.wash_reason)).all())
