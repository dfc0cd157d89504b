"""/signals: the items of the published snapshot whose signal read a market price, filtered and
ordered by how far that price strays from fair value, paged with a cursor that pins the snapshot."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from fairvalue.answers import check_choice, iso, page_bounds, rounded, snapshot_reference
from fairvalue.errors import BadInput, NotReady
from fairvalue.item_reads import signal_prices
from fairvalue.reads import collection_row
from models.signals import SIGNALS
from storage import snapshots
from storage.db import session_scope
from storage.registry import version_numbers
from storage.snapshots import PublishedValue, published_snapshot
from storage.tables import Item, NowcastRow, NowcastSnapshot


def _encode_cursor(snapshot_id: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([snapshot_id, offset]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        snapshot_id, offset = json.loads(raw)
        # Within the columns' types (a snapshot id is an INTEGER, an offset a BIGINT), or the
        # database refuses the query; bool is an int to Python, not an id.
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (snapshot_id, offset)) \
                or not (0 < snapshot_id < 2**31 and 0 <= offset < 2**63):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput("cursor is not one this API handed out; start again without it") from None
    return snapshot_id, offset


def _has_trait(attributes: dict, trait: str) -> bool:
    """A trait matches an attribute value, or an element of a list-valued attribute (case-insensitive)."""
    wanted = trait.casefold()
    for value in attributes.values():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str | int | float) and str(v).casefold() == wanted for v in values):
            return True
    return False


def signals_page(slug: str | None = None, signal: str | None = None, item_type: str | None = None,
                 trait: str | None = None, min_deviation: float | None = None, limit: int = 50,
                 cursor: str | None = None) -> dict[str, Any]:
    """Items of the published snapshot whose signal read a market price (an open ask, or a last
    sale at most FAIRVALUE_SIGNAL_MAX_AGE_DAYS older than the valuation: item_reads.signal_prices),
    filtered, ordered by |deviation| (that price / fair value - 1) descending then item id. A
    cursor pins the snapshot it was made from, so paging through stays consistent while new
    snapshots are published."""
    if signal is not None:
        signal = check_choice("signal", signal, SIGNALS)
    if min_deviation is not None and not (0 <= min_deviation < 1e6):
        raise BadInput("min_deviation must be a fraction >= 0, e.g. 0.1 for 10 %")
    limit, _ = page_bounds(limit, 0)
    with session_scope() as session:
        coll = collection_row(session, slug)
        if cursor:
            snapshot_id, offset = _decode_cursor(cursor)
            snap = session.get(NowcastSnapshot, snapshot_id)
            if snap is None or snap.collection_id != coll.id or snap.status != snapshots.PUBLISHED:
                raise BadInput("cursor points at a snapshot this collection does not serve")
            if snap.rows_thinned_at is not None:  # its pages would miss most items (storage/retention.py)
                raise BadInput("cursor points at a snapshot past FAIRVALUE_RETENTION_DAYS; start again without it")
        else:
            snap, offset = published_snapshot(session, coll), 0
            if snap is None:
                raise NotReady("no published snapshot yet; run a nowcast")
        query = (select(NowcastRow.item_key, NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90,
                        NowcastRow.signal, NowcastRow.last_price, NowcastRow.last_sale_at, Item.item_type,
                        Item.attributes, NowcastRow.ask_price, NowcastRow.ask_at, NowcastRow.signal_basis,
                        NowcastRow.deviation)
                 .join(Item, (Item.collection_id == coll.id) & (Item.item_key == NowcastRow.item_key))
                 .where(NowcastRow.snapshot_id == snap.id,
                        NowcastRow.last_price.is_not(None) | NowcastRow.ask_price.is_not(None)))
        if signal:
            query = query.where(NowcastRow.signal == signal)
        if item_type:
            query = query.where(func.lower(Item.item_type) == item_type.lower())
        rows = session.exec(query).all()
        version = version_numbers(session, [snap.model_version_id]).get(snap.model_version_id)
    rows = [r for r in rows if r[1]]
    picked = []
    for (basis, deviation), r in zip(signal_prices([PublishedValue(
            snap.id, snap.as_of, snap.published_at, snap.model_version_id, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
            snap.valued_at, r[9], r[10], snap.signal_buy_below, snap.signal_sell_above, snap.signal_max_age_days,
            r[11], r[12], snap.signal_prices_recorded) for r in rows]), rows, strict=True):
        if basis is None or (min_deviation is not None and abs(deviation) < min_deviation):
            continue
        if trait and not _has_trait(r[8] or {}, trait):
            continue
        picked.append((deviation, basis, r))
    picked.sort(key=lambda p: (-abs(p[0]), _key_order(p[2][0])))
    page = picked[offset:offset + limit]
    more = offset + limit < len(picked)
    return {
        "collection": coll.slug, "currency": coll.currency,
        "snapshot": {**snapshot_reference(snap.id, snap.as_of, snap.valued_at, snap.published_at),
                     "model_version": version},
        "filters": {"signal": signal, "type": item_type, "trait": trait, "min_deviation": min_deviation},
        "order": "abs(deviation) desc, item_id",
        "total": len(picked), "offset": offset, "limit": limit,
        "next_cursor": _encode_cursor(snap.id, offset + limit) if more else None,
        "signals": [{"item_id": r[0], "type": r[7], "signal": r[4], "fair_value": rounded(r[1]),
                     "band": {"p10": rounded(r[2]), "p90": rounded(r[3])}, "last_price": rounded(r[5]),
                     "last_sale_at": iso(r[6]), "ask_price": rounded(r[9]), "ask_at": iso(r[10]),
                     "signal_basis": basis, "deviation": rounded(d)} for d, basis, r in page],
    }


def _key_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)
