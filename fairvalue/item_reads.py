"""The API's item reads, one valuation or many from one snapshot, answered as JSON bytes.

Answers come from the published snapshot held in this process (fairvalue/snapshot_cache.py),
rendered once per snapshot: a read the held snapshot answers costs no database statement and
no JSON encoding. What it cannot answer goes to the database as before (one Core statement),
so every status and body stays what it was: an unknown id (404), an item the snapshot does not
value (404 with why, or not_found), a collection with nothing published (503) or too many items
to hold.

Freshness: the pointer is re-read at most every FAIRVALUE_API_SNAPSHOT_CHECK_SECONDS, and a
publish in this process drops the held snapshot at once (storage.snapshots.publish_listeners).
Item type and attributes are read with the snapshot: an edit to an existing item's attributes
(the card universe) shows from the next published snapshot on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from fairvalue.answers import ITEM_KEY, ITEM_KEYS, MAX_BULK_IDS, check_item_key, iso, rounded, snapshot_reference
from fairvalue.errors import BadInput, NotFound, NotReady
from fairvalue.reads import collection_row
from fairvalue.settings import get_settings
from fairvalue.snapshot_cache import PointerCache
from models.signals import band_position, market_signals
from models.validation import MAX_PRICE
from storage.db import get_engine, session_scope
from storage.snapshots import (
    PublishedValue,
    SignalRules,
    publish_listeners,
    published_snapshot,
    read_pointer,
    read_published_items,
    read_snapshot_items,
)
from storage.tables import NowcastSnapshot


def dumps(value: Any) -> bytes:
    """JSON exactly as Starlette's JSONResponse renders it, so held answers are byte-identical."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class Served(NamedTuple):
    body: bytes  # the JSON answer
    signals: list[str]  # of the valuations in it, for the predictions-served metric


# --- one answer's parts ---------------------------------------------------------------------

def signal_prices(values: list[PublishedValue]) -> list[tuple[str | None, float | None]]:
    """(basis, deviation) of each published value: which price its signal was read from, the
    open ask or the last sale while it is at most FAIRVALUE_SIGNAL_MAX_AGE_DAYS older than the
    valuation, and that price's deviation from the fair value; (None, None or NaN) when neither
    is one. As the nowcast recorded them with the row, so an answer's signal, basis and deviation
    agree: derived again from the row's rounded fair value, one within a rounding of a threshold
    reads on its other side. A snapshot from before migration 0019 recorded none: derived by the
    nowcast's rule (models.signals.market_signals) at the thresholds its snapshot recorded, as
    they were. The values are one snapshot's (every caller reads one)."""
    if not values:
        return []
    if values[0].signal_prices_recorded:
        return [(v.signal_basis, v.deviation) for v in values]
    nan = float("nan")
    ages = [((v.valued_at or v.as_of) - v.last_sale_at).total_seconds() / 86400.0
            if v.last_sale_at is not None else nan for v in values]
    _, bases, deviations = market_signals(
        [nan if v.ask_price is None else v.ask_price for v in values],
        [nan if v.last_price is None else v.last_price for v in values], ages,
        [v.fair_value for v in values], *SignalRules.recorded(values[0], get_settings()))
    return list(zip(bases.tolist(), deviations.tolist(), strict=True))


def _valuation(v: PublishedValue, version: int | None, currency: str,
               signal_price: tuple[str | None, float]) -> dict[str, Any]:
    basis, deviation = signal_price
    return {
        "item_id": v.item_key,
        "fair_value": rounded(v.fair_value),
        "currency": currency,
        "band": {"p10": rounded(v.p10), "p90": rounded(v.p90)},
        "signal": v.signal,
        "signal_basis": basis,
        "deviation": rounded(deviation),
        "ask": None if v.ask_price is None else {"price": rounded(v.ask_price), "listed_at": iso(v.ask_at)},
        "last_sale": None if v.last_price is None else {"price": rounded(v.last_price),
                                                        "timestamp": iso(v.last_sale_at)},
        "snapshot": snapshot_reference(v.snapshot_id, v.as_of, v.valued_at, v.published_at),
        "model_version": version,
    }


def _value_of(row) -> PublishedValue:
    return PublishedValue(row.snapshot_id, row.as_of, row.published_at, row.model_version_id, row.item_key,
                          row.fair_value, row.p10, row.p90, row.signal, row.last_price, row.last_sale_at,
                          row.valued_at, row.ask_price, row.ask_at, row.signal_buy_below, row.signal_sell_above,
                          row.signal_max_age_days, row.signal_basis, row.deviation, row.signal_prices_recorded)


def _item_extra(slug: str, row) -> dict[str, Any]:
    """What a single-item answer has past its valuation."""
    return {"collection": slug, "type": row.item_type, "attributes": row.attributes}


@functools.lru_cache(maxsize=1024)
def _slug_json(slug: str) -> bytes:
    return dumps(slug)


def _bulk_body(slug: str, snapshot: bytes, valuations: list[bytes], not_found: list[str]) -> bytes:
    """{"collection", "snapshot", "valuations", "not_found"}, from parts already JSON."""
    return b"".join((b'{"collection":', _slug_json(slug), b',"snapshot":', snapshot, b',"valuations":[',
                     b",".join(valuations), b'],"not_found":', dumps(not_found) if not_found else b"[]", b"}"))


# --- the held snapshot ----------------------------------------------------------------------

class HeldItem(NamedTuple):
    signal: str
    valuation: bytes  # the item's entry in a bulk answer
    extra: bytes  # ',"collection":..,"type":..,"attributes":..}': the single-item answer is valuation[:-1] + extra


@dataclass(frozen=True)
class HeldSnapshot:
    snapshot: bytes  # {"id", "as_of", "published_at"} as JSON
    items: dict[str, HeldItem] | None  # None: more items than FAIRVALUE_API_SNAPSHOT_CACHE_MAX_ITEMS


def _read_pointer(slug: str) -> Hashable | None:
    with get_engine().connect() as connection:
        row = read_pointer(connection, slug)
    return None if row is None else tuple(row)  # (snapshot id, published at, n items)


def _load(slug: str, pointer: Hashable) -> HeldSnapshot:
    snapshot_id, _, n_items = pointer
    if n_items > get_settings().api_snapshot_cache_max_items:
        return HeldSnapshot(b"null", None)
    with get_engine().connect() as connection:
        rows = read_snapshot_items(connection, slug, snapshot_id)
    values = [_value_of(row) for row in rows]
    items: dict[str, HeldItem] = {}
    for row, value, signal_price in zip(rows, values, signal_prices(values), strict=True):
        body = _valuation(value, row.model_version, row.currency, signal_price)
        items[row.item_key] = HeldItem(row.signal, dumps(body), b"," + dumps(_item_extra(slug, row))[1:])
    return HeldSnapshot(dumps(body["snapshot"]) if items else b"null", items)


PUBLISHED = PointerCache(_read_pointer, _load, lambda: get_settings().api_snapshot_check_seconds)
publish_listeners.append(PUBLISHED.invalidate)


def _item_from(held: HeldSnapshot | None, key: str) -> Served | None:
    found = held.items.get(key) if held is not None and held.items is not None else None
    if found is None:
        return None
    return Served(found.valuation[:-1] + found.extra, [found.signal])


def _valuations_from(held: HeldSnapshot | None, slug: str, keys: list[str]) -> Served | None:
    if held is None or held.items is None:
        return None
    entries = list(map(held.items.get, keys))  # comprehensions, not one loop: a bulk read is 100s of ids
    found = [entry for entry in entries if entry is not None]
    if not found:  # the database tells an unknown collection (404) from an answer with every id not found
        return None
    not_found = [] if len(found) == len(keys) else [key for key, entry in zip(keys, entries, strict=True)
                                                    if entry is None]
    return Served(_bulk_body(slug, held.snapshot, [entry.valuation for entry in found], not_found),
                  [entry.signal for entry in found])


# --- the reads ------------------------------------------------------------------------------

def held_item(slug: str | None, key: str) -> Served | None:
    """One item's answer when the held snapshot has it and needs no pointer check now; None
    otherwise. Never does I/O (the API calls it on the event loop)."""
    slug = slug or get_settings().collection
    return _item_from(PUBLISHED.peek(slug), check_item_key(key))


def item(slug: str | None, key: str) -> Served:
    """Value, band, signal and last sale of one item from the published snapshot."""
    slug = slug or get_settings().collection
    check_item_key(key)
    return _item_from(PUBLISHED.get(slug), key) or _item_from_database(slug, key)


def item_valuation(slug: str | None, key: str) -> dict[str, Any]:
    """item()'s answer as a dict, for the web pages."""
    return json.loads(item(slug, key).body)


def bulk_keys(keys: list[str]) -> list[str]:
    """The ids of a bulk read: stripped, checked, without repeats, in their order."""
    if len(keys) <= MAX_BULK_IDS and ITEM_KEYS.match(",".join(keys)):  # the usual read: one match checks all
        return list(dict.fromkeys(keys))
    keys = [k.strip() for k in keys if k and k.strip()]
    if not keys:
        raise BadInput("ids holds no item id, e.g. ?ids=1,2,3")
    if len(keys) > MAX_BULK_IDS:
        raise BadInput(f"at most {MAX_BULK_IDS} ids per request, got {len(keys)}")
    for key in keys:
        if not ITEM_KEY.match(key):
            check_item_key(key)  # the 400 with its reason
    return list(dict.fromkeys(keys))


def held_valuations(slug: str | None, keys: list[str]) -> Served | None:
    """Like held_item, for a bulk read (`keys` as bulk_keys returns them)."""
    slug = slug or get_settings().collection
    return _valuations_from(PUBLISHED.peek(slug), slug, keys)


def valuations(slug: str | None, keys: list[str]) -> Served:
    """Many items from ONE snapshot (a concurrent publish never mixes two), plus the unknown ids."""
    slug = slug or get_settings().collection
    keys = bulk_keys(keys)
    return _valuations_from(PUBLISHED.get(slug), slug, keys) or _valuations_from_database(slug, keys)


def quote(slug: str | None, key: str, price: float) -> dict[str, Any]:
    """An asked price (a listing, an offer) against the item's published value: how far it
    strays, the signal it would get at the thresholds the published signals were judged at (as
    the published signal gets from the last sale) and where it sits in the band."""
    slug = slug or get_settings().collection
    check_item_key(key)
    if not 0 < price <= MAX_PRICE:
        raise BadInput(f"price must be above 0 and at most {MAX_PRICE:g}, got {price:g}")
    row = _published_item(slug, key, with_attributes=False)
    value = _value_of(row)
    valuation = _valuation(value, row.model_version, row.currency, signal_prices([value])[0])
    rules = SignalRules.recorded(value, get_settings())  # the published signals' own
    # Judged as a sale of now (market_signals), so the deviation is answered on its signal's side of
    # each threshold, as a published one is: a price 9.99996 % under the value read "-0.1, HOLD".
    signal, _, deviation = market_signals([np.nan], [price], [0.0], [row.fair_value], rules.buy_below,
                                          rules.sell_above, max_age_days=0.0)
    return {
        "item_id": key,
        "price": price,
        "currency": row.currency,
        "fair_value": valuation["fair_value"],
        "band": valuation["band"],
        "deviation": rounded(deviation[0]),
        "signal": str(signal[0]),
        "band_position": None if row.p10 is None or row.p90 is None else band_position(price, row.p10, row.p90),
        "thresholds": _thresholds(rules),
        "snapshot": valuation["snapshot"],
        "model_version": valuation["model_version"],
    }


def _thresholds(rules: SignalRules) -> dict[str, float]:
    return {"buy_below": rules.buy_below, "sell_above": rules.sell_above}


def signal_thresholds(snapshot_id: int) -> dict[str, float]:
    """The thresholds a published snapshot's signals were judged at, as a quote answers them: what
    a page needs to write a deviation that never reads on the other side of one than its signal."""
    with session_scope() as session:
        snap = session.get(NowcastSnapshot, snapshot_id)
        if snap is None:
            raise NotFound(f"no snapshot {snapshot_id}")
        return _thresholds(SignalRules.recorded(snap, get_settings()))


# --- from the database, for what the held snapshot does not answer ---------------------------

def _published_items(slug: str, keys: list[str], with_attributes: bool) -> list:
    """The published rows of the known `keys` (one statement); an unknown collection is a NotFound."""
    with get_engine().connect() as connection:
        rows = read_published_items(connection, slug, keys, with_attributes)
    if not rows:
        with session_scope() as session:
            collection_row(session, slug)  # NotFound for an unknown collection
    return rows


def _published_item(slug: str, key: str, with_attributes: bool):
    """The published row of one item: NotFound for an unknown one, and for one the published
    snapshot does not value (with why: why_not_valued); NotReady when nothing is published yet."""
    rows = _published_items(slug, [key], with_attributes)
    if not rows:
        raise NotFound(f"no item {key!r} in {slug}")
    if rows[0].snapshot_id is None:
        raise NotReady("no published snapshot yet; run a nowcast")
    if rows[0].fair_value is None:
        raise NotFound(why_not_valued(slug, key, rows[0].snapshot_id))
    return rows[0]


def why_not_valued(slug: str, key: str, snapshot_id: int) -> str:
    """Why the published snapshot holds no value of the known item `key`. A 404, not a 503: the
    item stays unvalued until something changes (its prices, the card universe, a nowcast after
    it was added), and a 5xx invites retries and alerts. Read only on this path."""
    from sqlalchemy import func
    from sqlmodel import select

    from fairvalue.kinds import is_daily
    from storage.tables import DailyPrice, Item

    with session_scope() as session:
        coll = collection_row(session, slug)
        if not is_daily(coll):
            return f"item {key} is not in the published snapshot {snapshot_id}: it was added after that nowcast"
        item = session.get(Item, (coll.id, key))
        if item is not None and not (item.attributes or {}).get("active", True):  # as card_keys reads it
            return (f"card {key} is not active (active: false in the card universe): it is neither collected nor "
                    f"valued, and the published snapshot {snapshot_id} holds no value of it")
        n_prices = session.exec(select(func.count()).select_from(DailyPrice).where(
            DailyPrice.collection_id == coll.id, DailyPrice.item_key == key)).one()
    if not n_prices:
        return (f"card {key} has no price history yet, so the published snapshot {snapshot_id} holds no value of "
                "it: a card is valued once it has a few days of prices")
    return (f"card {key} is not in the published snapshot {snapshot_id}: its {n_prices} daily price(s) were too few "
            "for a fair value at that nowcast, or were stored after it")


def _item_from_database(slug: str, key: str) -> Served:
    row = _published_item(slug, key, with_attributes=True)
    value = _value_of(row)
    body = _valuation(value, row.model_version, row.currency, signal_prices([value])[0])
    body.update(_item_extra(slug, row))
    return Served(dumps(body), [row.signal])


def _valuations_from_database(slug: str, keys: list[str]) -> Served:
    rows = _published_items(slug, keys, with_attributes=False)
    if rows and rows[0].snapshot_id is None:  # every row reads the same pointer
        raise NotReady("no published snapshot yet; run a nowcast")
    # A known item the published snapshot does not value is answered as an unknown id is: in
    # not_found (a single read says why: why_not_valued).
    by_key = {row.item_key: row for row in rows if row.fair_value is not None}
    if rows:
        v0 = rows[0]
        snapshot = snapshot_reference(v0.snapshot_id, v0.as_of, v0.valued_at, v0.published_at)
    else:  # no id is known: the answer still names the snapshot it would have been read from
        with session_scope() as session:
            snap = published_snapshot(session, collection_row(session, slug))
        if snap is None:  # as when some id is known: whether an id is known does not change the status
            raise NotReady("no published snapshot yet; run a nowcast")
        snapshot = snapshot_reference(snap.id, snap.as_of, snap.valued_at, snap.published_at)
    found = [by_key[k] for k in keys if k in by_key]
    values = [_value_of(r) for r in found]
    bodies = [dumps(_valuation(v, r.model_version, r.currency, signal_price))
              for r, v, signal_price in zip(found, values, signal_prices(values), strict=True)]
    return Served(_bulk_body(slug, dumps(snapshot), bodies, [k for k in keys if k not in by_key]),
                  [r.signal for r in found])
