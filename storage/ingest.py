"""Write paths for market data: items, daily market inputs and sales. All idempotent."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Date, Float, bindparam, insert, text
from sqlmodel import Session, select

from models.validation import (
    FLOOR_CHECK_DAYS,
    CleanSale,
    FloorLookup,
    Reason,
    Rejection,
    ValidatedBatch,
    validate_batch,
)
from storage.bulk import copy_unless_conflict
from storage.tables import Collection, Item, MarketDay, MarketDayRevision, RejectedRow, RejectedSale, Sale, utcnow
from storage.upsert import COPY_FROM_ROWS, insert_ignoring_conflicts, upsert
from storage.wash import flag_wash_trades

UNIQUE_ITEMS, DAILY_PRICES = "unique_items", "daily_prices"  # collection kinds
COLLECTION_NAMES = {
    "cryptopunks": ("CryptoPunks", UNIQUE_ITEMS, "ETH"),
    "cards": ("Pokémon cards", DAILY_PRICES, "USD"),
}
# The command that makes each of them, for an answer about one not made yet.
MADE_BY = {"cryptopunks": "`fairvalue seed` (which `./run up` runs)", "cards": "`fairvalue cards load`"}
# The first day a collection could trade, where it is known: a sale dated before it is a broken
# feed, not a sale (the punks were released on 2017-06-22; their first sale is of 06-23). The
# collection is made with it (collections.first_day), and the checks read the stored row's, as
# they read a card universe's (fairvalue.card_universe stores its `first_day:`).
FIRST_SALE_DAYS = {"cryptopunks": date(2017, 6, 22)}


def first_sale_day(slug: str) -> date | None:
    """The first day ensure_collection makes `slug` with: for market data read from files, where
    no collection is stored (a replay of the bundled files)."""
    return FIRST_SALE_DAYS.get(slug)


def _made_as(slug: str) -> tuple[str, str, str]:
    """(name, kind, currency) of the collection ensure_collection makes for `slug`."""
    return COLLECTION_NAMES.get(slug, (slug, UNIQUE_ITEMS, "ETH"))


def kind_of_slug(session: Session, slug: str) -> str:
    """The kind of the collection `slug`: its stored row's, else the kind ensure_collection would make
    it (a command can then say what a collection not made yet takes without making it)."""
    stored = session.exec(select(Collection.kind).where(Collection.slug == slug)).first()
    return stored if stored is not None else _made_as(slug)[1]


def ensure_collection(session: Session, slug: str) -> Collection:
    found = session.exec(select(Collection).where(Collection.slug == slug)).first()
    if found:
        return found
    name, kind, currency = _made_as(slug)
    insert_ignoring_conflicts(
        session, Collection.__table__, [{"slug": slug, "name": name, "kind": kind, "currency": currency,
                                          "created_at": utcnow(), "first_day": first_sale_day(slug)}]
    )
    session.flush()
    return session.exec(select(Collection).where(Collection.slug == slug)).one()


def add_items(session: Session, collection: Collection, items: Iterable[Mapping[str, Any]]) -> int:
    """Add items that are not there yet; return how many were new."""
    rows = [
        {
            "collection_id": collection.id,
            "item_key": str(it["item_key"]),
            "item_type": str(it.get("item_type", "")),
            "attributes": dict(it.get("attributes", {})),
        }
        for it in items
    ]
    inserted = 0
    for start in range(0, len(rows), 2000):
        inserted += len(
            insert_ignoring_conflicts(session, Item.__table__, rows[start : start + 2000], returning="item_key")
        )
    return inserted


def put_market_days(
    session: Session, collection: Collection, days: Mapping[date, Mapping[str, float | None]]
) -> int:
    """Insert or correct daily market inputs; return how many days were new or changed. Each
    new or changed day is also appended to market_day_revisions, after the upsert: its row
    lock orders two corrections of one day, so the later revision has the larger id."""
    existing = {
        m.day: (m.floor, m.eth_usd)
        for m in session.exec(select(MarketDay).where(MarketDay.collection_id == collection.id))
    }
    changed = []
    for day, values in days.items():
        old_floor, old_eth = existing.get(day, (None, None))
        floor = values.get("floor", old_floor)
        eth_usd = values.get("eth_usd", old_eth)
        if day in existing and (floor, eth_usd) == (old_floor, old_eth):
            continue
        changed.append({"collection_id": collection.id, "day": day, "floor": floor, "eth_usd": eth_usd})
    upsert(session, MarketDay.__table__, changed, keys=("collection_id", "day"))
    if changed:
        stored_at = utcnow()
        session.execute(insert(MarketDayRevision.__table__), [{**day, "stored_at": stored_at} for day in changed])
    return len(changed)


def floor_lookup(session: Session, collection: Collection, days: Iterable[date] | None = None) -> FloorLookup:
    """Every floor of the collection; or, given `days`, only the latest FLOOR_CHECK_DAYS floors
    before each of them (`FloorLookup.before`; a small batch about one day must not read the
    whole series)."""
    if days is None:
        rows = session.exec(
            select(MarketDay.day, MarketDay.floor).where(MarketDay.collection_id == collection.id)
        ).all()
        return FloorLookup({d: f for d, f in rows})
    days = sorted(set(days))
    if not days:
        return FloorLookup({})
    connection = session.connection()
    if connection.dialect.name == "postgresql":  # one statement for every day of a batch of calls
        return FloorLookup(dict(connection.execute(FLOORS_BEFORE, {"slug": collection.slug, "days": days}).all()))
    found = {}
    for day in days:
        found.update(connection.execute(FLOOR_BEFORE, {"collection": collection.id, "day": day}).all())
    return FloorLookup(found)


# Look-ups as plain SQL on the session's connection: building ORM statements cost more than
# running them (bench/ingest.py). KNOWN_AMONG and FLOORS_BEFORE find the collection by its slug, so
# storage/webhook_calls.py can send them in one round trip with COLLECTION_ID.
COLLECTION_ID = text("SELECT id, first_day FROM collections WHERE slug = :slug")
# PostgreSQL takes the keys as one array parameter: an IN list of one parameter per key runs out
# of the protocol's 65,535 parameters when a group commit's calls name that many items.
KNOWN_AMONG = {
    "postgresql": text("SELECT item_key FROM items WHERE collection_id = "
                       "(SELECT id FROM collections WHERE slug = :slug) AND item_key = ANY(CAST(:keys AS text[]))"),
    "sqlite": text("SELECT item_key FROM items WHERE collection_id = "
                   "(SELECT id FROM collections WHERE slug = :slug) AND item_key IN :keys")
    .bindparams(bindparam("keys", expanding=True)),
}
FLOORS_BEFORE = text("SELECT f.day, f.floor FROM unnest(CAST(:days AS date[])) AS asked(day) CROSS JOIN LATERAL "
                     "(SELECT day, floor FROM market_days WHERE collection_id = (SELECT id FROM collections "
                     "WHERE slug = :slug) AND day < asked.day AND floor > 0 ORDER BY day DESC "
                     "LIMIT :check_days) AS f").bindparams(check_days=FLOOR_CHECK_DAYS).columns(day=Date, floor=Float)
FLOOR_BEFORE = text("SELECT day, floor FROM market_days WHERE collection_id = :collection AND day < :day "
                    "AND floor > 0 ORDER BY day DESC LIMIT :check_days").bindparams(
    check_days=FLOOR_CHECK_DAYS).columns(day=Date, floor=Float)
STORED_EVENT_IDS = text("SELECT event_id FROM sales WHERE collection_id = :collection "
                        "AND event_id = ANY(CAST(:ids AS text[]))")  # PostgreSQL: one array parameter
STORED_HASHES = text("SELECT event_id, content_hash FROM sales WHERE collection_id = :collection "
                     "AND event_id IN :ids").bindparams(bindparam("ids", expanding=True))


def known_item_keys(session: Session, collection: Collection, among: Iterable[str] | None = None) -> set[str]:
    """Item keys of the collection; only those `among` the given keys when they are given (a
    small batch naming a few items must not load every key: bench/ingest.py)."""
    if among is not None:
        keys = list(among)
        if not keys:
            return set()
        connection = session.connection()
        rows = connection.execute(KNOWN_AMONG[connection.dialect.name], {"slug": collection.slug, "keys": keys})
        return {key for (key,) in rows}
    return set(session.exec(select(Item.item_key).where(Item.collection_id == collection.id)).all())


@dataclass
class IngestReport:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    # Of `rejected`, rows kept already: a refused row is stored once (by its content and reason),
    # so ingesting a file again refuses its bad rows again and keeps nothing new.
    rejected_kept_before: int = 0
    reasons: Counter = field(default_factory=Counter)
    accepted_event_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "rejected_kept_before": self.rejected_kept_before,
            "rejected_by_reason": dict(self.reasons),
        }

    def add(self, other: IngestReport) -> None:
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected += other.rejected
        self.rejected_kept_before += other.rejected_kept_before
        self.reasons.update(other.reasons)
        self.accepted_event_ids.extend(other.accepted_event_ids)


def _json_safe(value: Any) -> Any:
    """Rejected rows are kept whole; NaN/inf are not JSON, so they are kept as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def ingest_sales(
    session: Session,
    collection: Collection,
    rows: Iterable[Mapping[str, Any]],
    origin: str,
    min_floor_fraction: float,
    known_items: set[str] | None = None,
    floors: FloorLookup | None = None,
) -> IngestReport:
    """Validate and store a batch of sales. Re-sending a batch changes nothing."""
    batch = validate_batch(
        rows,
        known_items if known_items is not None else known_item_keys(session, collection),
        floors or floor_lookup(session, collection),
        min_floor_fraction,
        first_sale_day=collection.first_day,
    )
    return store_validated(session, collection, batch, origin)


def insert_sales(session: Session, collection: Collection, sales: list[CleanSale]) -> set[str]:
    """Insert clean sales, skipping event ids already stored, and flag the suspected wash
    trades they reveal (storage/wash.py); return the event ids inserted."""
    now = utcnow()
    sale_rows = [
        {
            "collection_id": collection.id,
            "event_id": s.event_id,
            "item_key": s.item_key,
            "ts": s.ts,
            "price": s.price,
            "seller": s.seller,
            "buyer": s.buyer,
            "source": s.source,
            "time_precision": s.time_precision,
            "content_hash": s.content_hash,
            "ingested_at": now,
        }
        for s in sales
    ]
    inserted = _copy_new_sales(session, collection, sale_rows)
    if inserted is None:
        inserted = set()
        for start in range(0, len(sale_rows), 2000):
            chunk = sale_rows[start : start + 2000]
            inserted.update(insert_ignoring_conflicts(session, Sale.__table__, chunk, returning="event_id"))
    flag_wash_trades(session, collection, [s for s in sales if s.event_id in inserted])
    return inserted


def _copy_new_sales(session: Session, collection: Collection, rows: list[dict[str, Any]]) -> set[str] | None:
    """The event ids of `rows` not stored yet, written by one COPY (storage.bulk.copy_unless_conflict);
    None where that does not apply (SQLite, a batch below COPY_FROM_ROWS) or a concurrent writer
    stored one of them meanwhile: the caller then inserts with ON CONFLICT, as before."""
    connection = session.connection()
    if len(rows) < COPY_FROM_ROWS or connection.dialect.name != "postgresql":
        return None
    stored = {event_id for (event_id,) in connection.execute(
        STORED_EVENT_IDS, {"collection": collection.id, "ids": [row["event_id"] for row in rows]})}
    new = [row for row in rows if row["event_id"] not in stored]
    if new and not copy_unless_conflict(session, Sale.__table__, new):
        return None
    return {row["event_id"] for row in new}


def store_validated(session: Session, collection: Collection, batch: ValidatedBatch, origin: str,
                    insert=None, stored_hashes=None, rejected_table: type[RejectedRow] = RejectedSale) -> IngestReport:
    """Store a validated batch: new events, and rejections (an event id already stored with
    other content is one too); events already stored with the same content count as duplicates.
    Sales by default; listings pass their own `insert`, `stored_hashes` and `rejected_table`."""
    insert, stored_hashes = insert or insert_sales, stored_hashes or stored_content_hashes
    report = IngestReport(duplicate=batch.repeated_in_batch)
    inserted = insert(session, collection, batch.clean)
    # Rows that were not inserted hit an event id we already hold.
    not_inserted = [s for s in batch.clean if s.event_id not in inserted]
    stored_hash = stored_hashes(session, collection, [s.event_id for s in not_inserted])
    duplicates, conflicts = already_stored(not_inserted, stored_hash)
    stored_hash.update((s.event_id, s.content_hash) for s in batch.clean if s.event_id in inserted)
    repeats, refused = judge_contested(batch.rejected, stored_hash)
    report.duplicate += duplicates + repeats
    rejections = refused + conflicts
    report.accepted = len(inserted)
    report.accepted_event_ids = sorted(inserted)
    report.rejected = len(rejections)
    report.rejected_kept_before = report.rejected - len(
        keep_rejections(session, collection, rejections, origin, rejected_table))
    report.reasons.update(r.reason for r in rejections)
    return report


def conflict_with_stored(sale: CleanSale) -> Rejection:
    """A sale whose event id is already stored with other content, kept as a rejection: the row
    as it was sent, or, for a sale made without one, as it was read."""
    raw = dict(sale.row) if sale.row is not None else {
        "event_id": sale.event_id, "timestamp": sale.ts.isoformat(), "item_key": sale.item_key, "price": sale.price,
        "seller": sale.seller, "buyer": sale.buyer, "source": sale.source, "time_precision": sale.time_precision}
    return Rejection(raw, Reason.DUPLICATE_CONFLICT,
                     f"event id {sale.event_id[:100]!r} is already stored with different content")


def judge_contested(rejections: Iterable[Rejection], stored_hash: Mapping[str, str]) -> tuple[int, list[Rejection]]:
    """(duplicates, the rest) of a batch's rejections once it is stored (`stored_hash`: what each of
    its clean events' ids now holds). A row refused because an earlier row of the batch gives its
    event id other content (Rejection.contested_hash) is a duplicate when its own content is what
    the id holds, stored before the batch: as it would be sent alone. Of `[e1 at 96, e1 at 95]`
    with e1 stored at 95, the second is a duplicate; it was kept as a conflict, and the call,
    every row a conflict, refused (409) as if nothing in it matched what is stored."""
    duplicates, rest = 0, []
    for rejection in rejections:
        if rejection.contested_hash is not None and stored_hash.get(rejection.event_id) == rejection.contested_hash:
            duplicates += 1
        else:
            rest.append(rejection)
    return duplicates, rest


def already_stored(sales: Iterable[CleanSale], stored_hash: Mapping[str, str]) -> tuple[int, list[Rejection]]:
    """Sales whose event id is already stored: the same content is a duplicate (counted), other
    content a conflict (kept as a rejection)."""
    duplicates, conflicts = 0, []
    for sale in sales:
        if stored_hash.get(sale.event_id) == sale.content_hash:
            duplicates += 1
        else:
            conflicts.append(conflict_with_stored(sale))
    return duplicates, conflicts


def stored_content_hashes(session: Session, collection: Collection, event_ids: Iterable[str]) -> dict[str, str]:
    """The content hash of each of these event ids that is stored."""
    ids, found = list(event_ids), {}
    for start in range(0, len(ids), 1000):
        found.update(session.connection().execute(
            STORED_HASHES, {"collection": collection.id, "ids": ids[start : start + 1000]}).all())
    return found


def _text(value: str | None) -> str | None:
    """Text columns cannot hold NUL; a refused row may (it is kept whole, escaped, in `row`)."""
    return None if value is None else value.replace("\x00", "\ufffd")


def store_rejections(session: Session, collection: Collection, rejections: list[Rejection], origin: str) -> int:
    """Keep each refused row with its reason, once (by row and reason); return how many were new."""
    return len(keep_rejections(session, collection, rejections, origin))


def keep_rejections(session: Session, collection: Collection, rejections: list[Rejection], origin: str,
                    table: type[RejectedRow] = RejectedSale) -> set[str]:
    """store_rejections, returning the row hashes kept now (the others were kept already).
    `table`: where refused rows of this kind are kept (sales by default, or listings)."""
    rows = [
        {
            "collection_id": collection.id,
            "event_id": _text(r.event_id),
            "reason": r.reason,
            "detail": _text(r.detail[:1000]),
            "row": _json_safe(r.row),
            "row_hash": r.row_hash,
            "origin": _text(origin[:200]),
            "rejected_at": utcnow(),
        }
        for r in rejections
    ]
    return {row_hash for start in range(0, len(rows), 2000)
            for row_hash in insert_ignoring_conflicts(session, table.__table__, rows[start : start + 2000],
                                                      returning="row_hash")}
