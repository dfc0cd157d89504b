"""Flag suspected wash trades as sales are stored (the rules are in models/wash.py).

New sales can change flags in two ways: a new sale may itself look like a wash trade, and a
sale that arrives late may be the evidence that makes a later, stored sale one (the first leg
of a round trip, a pair's earlier trade). So the sales read around a batch are the window
before its first sale to the window after its last, and every flag found is merged into the
stored one by `strongest`: evidence only ever adds up, and re-sending a batch changes nothing.

What this reads is enough for exactly the sales a new one can affect: those of its item, and
those between two of the batch's parties. A sale outside that set may look less suspicious from the partial
history read here than it is; `strongest` keeps its stored flag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import and_, or_, select, text
from sqlmodel import Session

from models.validation import CleanSale
from models.wash import WINDOW, ZERO_ADDRESS, strongest, wash_reasons
from storage.tables import Collection, Sale

# A batch up to this size reads only the sales of its items and parties; a larger one (a file,
# the seed) reads every sale of its time range, which is cheaper than a very long IN list.
NARROW_BATCH = 500
SET_REASON = text("UPDATE sales SET wash_reason = :reason WHERE id = :sale_id")


# On PostgreSQL the window is read straight from the driver's cursor, times as integer
# microseconds: SQLAlchemy's statement compilation, Row objects and one datetime per row were
# most of a webhook call's check and a third of a large batch's read (bench/ingest.py).
AROUND_PG = ("SELECT id, event_id, (EXTRACT(EPOCH FROM ts) * 1000000)::bigint, item_key, seller, buyer, wash_reason "
             "FROM sales WHERE collection_id = %(collection)s AND ts >= %(low)s AND ts <= %(high)s")
AROUND_PG_NARROW = (
    "SELECT id, event_id, (EXTRACT(EPOCH FROM ts) * 1000000)::bigint, item_key, seller, buyer, wash_reason "
    "FROM sales WHERE collection_id = %(collection)s AND ts >= %(low)s AND ts <= %(high)s "
    "AND (item_key = ANY(%(items)s) OR (seller = ANY(%(parties)s) AND buyer = ANY(%(parties)s)))")


def _fetch(connection, collection_id: int, low, high, items=None, parties=None) -> list[tuple]:
    """The sales of [low, high] (only those of `items` or between two of `parties`, when
    given) as tuples: id, event_id, ts, item_key, seller, buyer, wash_reason."""
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        params = {"collection": collection_id, "low": low, "high": high, "items": items, "parties": parties}
        return cursor.execute(AROUND_PG if items is None else AROUND_PG_NARROW, params).fetchall()
    sales = Sale.__table__
    query = select(sales.c.id, sales.c.event_id, sales.c.ts, sales.c.item_key, sales.c.seller, sales.c.buyer,
                   sales.c.wash_reason).where(sales.c.collection_id == collection_id, sales.c.ts >= low,
                                              sales.c.ts <= high)
    if items is not None:
        query = query.where(or_(sales.c.item_key.in_(items),
                                and_(sales.c.seller.in_(parties), sales.c.buyer.in_(parties))))
    return [tuple(row) for row in connection.execute(query)]


def _naive_utc(times: np.ndarray, dialect: str) -> np.ndarray:
    if dialect == "postgresql":
        return times.astype("int64").astype("datetime64[us]").astype("datetime64[ns]")
    return pd.to_datetime(pd.Series(times), utc=True, format="mixed").dt.tz_localize(None).to_numpy()


def _has_parties(sale: CleanSale) -> bool:
    return all(address not in ("", ZERO_ADDRESS) for address in (sale.seller, sale.buyer))


def flag_wash_trades(session: Session, collection: Collection, new_sales: Sequence[CleanSale]) -> Counter:
    """Set or strengthen the wash flag of the sales these new ones bear on; return how many
    flags were set, by reason."""
    relevant = [s for s in new_sales if _has_parties(s)]
    if not relevant:  # a sale without both parties is never flagged and is no one's evidence
        return Counter()
    low, high = min(s.ts for s in relevant) - WINDOW, max(s.ts for s in relevant) + WINDOW
    connection = session.connection()
    dialect = connection.dialect.name
    if len(relevant) <= NARROW_BATCH:
        # The sales a new one can bear on: its item's (round trips) and its parties' trades with
        # each other (repeated pairs); both read through an index (ix_sales_item_ts, ix_sales_parties).
        rows = _fetch(connection, collection.id, low, high, sorted({s.item_key for s in relevant}),
                      sorted({a for s in relevant for a in (s.seller, s.buyer)}))
    else:
        rows = _fetch(connection, collection.id, low, high)
    if not rows:
        return Counter()
    columns = (np.array(column, dtype=object) for column in zip(*rows, strict=True))
    ids, event_ids, times, items, sellers, buyers, stored = columns
    frame = pd.DataFrame({"id": ids, "event_id": event_ids, "ts": _naive_utc(times, dialect), "item_key": items,
                          "seller": sellers, "buyer": buyers, "stored": stored})
    found = wash_reasons(frame)
    changes = [{"sale_id": int(sale_id), "reason": strongest(stored, reason)}
               for sale_id, stored, reason in zip(frame["id"], frame["stored"], found, strict=True)
               if strongest(stored, reason) != stored]
    if changes:
        session.connection().execute(SET_REASON, changes)
    return Counter(change["reason"] for change in changes)
