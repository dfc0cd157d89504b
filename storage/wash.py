"""Flag suspected wash trades as sales are stored (the rules are in models/wash.py).

New sales can change flags in two ways: a new sale may itself look like a wash trade, and a
sale that arrives late may be the evidence that makes a later, stored sale one (the first leg
of a round trip, a pair's earlier trade). So the sales read around a batch are the window
before its first sale to the window after its last, and every flag found is merged into the
stored one by `strongest`: evidence only ever adds up, and re-sending a batch changes nothing.

What this reads is enough for exactly the sales a new one can affect: those of its item or
between its parties. A sale outside that set may look less suspicious from the partial
history read here than it is; `strongest` keeps its stored flag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd
from sqlalchemy import bindparam, or_, update
from sqlmodel import Session, select

from models.validation import CleanSale
from models.wash import WINDOW, ZERO_ADDRESS, strongest, wash_reasons
from storage.tables import Collection, Sale

# A batch up to this size reads only the sales of its items and parties; a larger one (a file,
# the seed) reads every sale of its time range, which is cheaper than a very long IN list.
NARROW_BATCH = 500


def _has_parties(sale: CleanSale) -> bool:
    return all(address not in ("", ZERO_ADDRESS) for address in (sale.seller, sale.buyer))


def flag_wash_trades(session: Session, collection: Collection, new_sales: Sequence[CleanSale]) -> Counter:
    """Set or strengthen the wash flag of the sales these new ones bear on; return how many
    flags were set, by reason."""
    relevant = [s for s in new_sales if _has_parties(s)]
    if not relevant:  # a sale without both parties is never flagged and is no one's evidence
        return Counter()
    query = select(Sale.id, Sale.event_id, Sale.ts, Sale.item_key, Sale.seller, Sale.buyer, Sale.wash_reason).where(
        Sale.collection_id == collection.id,
        Sale.ts >= min(s.ts for s in relevant) - WINDOW,
        Sale.ts <= max(s.ts for s in relevant) + WINDOW,
    )
    if len(relevant) <= NARROW_BATCH:
        items = sorted({s.item_key for s in relevant})
        parties = sorted({a for s in relevant for a in (s.seller, s.buyer)})
        query = query.where(or_(Sale.item_key.in_(items), Sale.seller.in_(parties), Sale.buyer.in_(parties)))
    rows = session.exec(query).all()
    if not rows:
        return Counter()
    frame = pd.DataFrame(rows, columns=["id", "event_id", "ts", "item_key", "seller", "buyer", "stored"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None)
    found = wash_reasons(frame)
    changes = [{"sale_id": int(sale_id), "reason": strongest(stored, reason)}
               for sale_id, stored, reason in zip(frame["id"], frame["stored"], found, strict=True)
               if strongest(stored, reason) != stored]
    if changes:
        table = Sale.__table__
        statement = update(table).where(table.c.id == bindparam("sale_id")).values(wash_reason=bindparam("reason"))
        session.connection().execute(statement, changes)
    return Counter(change["reason"] for change in changes)

