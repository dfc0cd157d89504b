"""Nowcast snapshots and the pointer that publishes them.

A snapshot's rows are written and committed while its status is `building`; nobody reads
them then, because readers only follow the published pointer. Publishing is one transaction
that flips the status and moves the pointer, so a reader sees the old snapshot or the new
one, never a mix. Rows of a snapshot never change after it is built.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Row, and_, bindparam, event, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from models.times import naive_utc
from storage.bulk import copy_csv
from storage.market import item_order
from storage.tables import Collection, Item, ModelVersion, NowcastRow, NowcastSnapshot, PublishedSnapshot, utcnow

# The last two: the price each signal read and its deviation, as the nowcast judged them (NowcastRow);
# a snapshot written without them (before migration 0019) has the others (row_columns).
ROW_COLUMNS = ("item_key", "fair_value", "p10", "p90", "signal", "last_price", "last_sale_at", "ask_price", "ask_at",
               "signal_basis", "deviation")
SIGNAL_PRICE_COLUMNS = ROW_COLUMNS[-2:]
TIME_COLUMNS = ("last_sale_at", "ask_at")
NUMBER_COLUMNS = ("fair_value", "p10", "p90", "last_price", "ask_price")


def row_columns(signal_prices_recorded: bool) -> tuple[str, ...]:
    """The columns of a snapshot's rows and archive: ROW_COLUMNS, without the signals' basis and
    deviation for a snapshot that did not record them."""
    return ROW_COLUMNS if signal_prices_recorded else ROW_COLUMNS[:-len(SIGNAL_PRICE_COLUMNS)]


# A snapshot's status (nowcast_snapshots.status). `building` while its rows are written; `published`
# once the pointer moved to it; `superseded` when a later snapshot was published first; `shadow` a
# contender's, kept beside the champion's and never published (pipeline.nowcast). No code writes
# `failed` (the column always allowed it); retention counts it among the never published.
BUILDING, PUBLISHED, SHADOW, SUPERSEDED, FAILED = "building", "published", "shadow", "superseded", "failed"
STATUSES = (BUILDING, PUBLISHED, SHADOW, SUPERSEDED, FAILED)


def write_snapshot(
    session: Session,
    collection: Collection,
    model_version_id: int,
    as_of: datetime,
    data_cutoff: datetime | None,
    values: pd.DataFrame,
    rows_csv: str | None = None,
    valued_at: datetime | None = None,
    data_read_at: datetime | None = None,
    data_snapshot: str | None = None,
    signal_rules: SignalRules | None = None,
) -> NowcastSnapshot:
    """Write a complete, unpublished snapshot (the caller commits). `valued_at` is the moment the
    values are for, when it is not `as_of` (a silent market, models.nowcast.valuation_moment);
    `data_read_at` the moment the nowcast read its sales at (those stored by then are its data),
    and on PostgreSQL `data_snapshot` the pg_snapshot it read them under (exactly its data).

    The rows stored are exactly the archive's (`snapshot_csv`; pass it as `rows_csv` when it is
    already made), streamed with COPY on PostgreSQL: a 1M-item snapshot as executemany INSERTs
    took minutes. It is still written `building` in the caller's transaction and published by
    one pointer switch. `signal_rules`: the thresholds the values' signals were judged at; the
    rows record each signal's basis and deviation when the values hold them (snapshot_csv)."""
    rules = signal_rules or SignalRules(None, None, None)
    text = rows_csv if rows_csv is not None else snapshot_csv(values)
    columns = tuple(text.split("\n", 1)[0].split(","))  # the archive's header
    snapshot = NowcastSnapshot(
        collection_id=collection.id,
        model_version_id=model_version_id,
        as_of=as_of,
        valued_at=valued_at or as_of,
        data_cutoff=data_cutoff,
        n_items=len(values),
        status=BUILDING,
        data_read_at=data_read_at,
        data_snapshot=data_snapshot,
        signal_buy_below=rules.buy_below,
        signal_sell_above=rules.sell_above,
        signal_max_age_days=rules.max_age_days,
        signal_prices_recorded=columns == ROW_COLUMNS,
    )
    session.add(snapshot)
    session.flush()
    copy_csv(session, "nowcast_rows", ("snapshot_id", *columns), _with_first_column(text, snapshot.id))
    return snapshot


def _with_first_column(text: str, value: int) -> str:
    """The CSV body (header dropped) with `value` as a first column, by one C-level replace."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body:
        return ""
    return f"{value}," + body.rstrip("\n").replace("\n", f"\n{value},") + "\n"


# Called with a collection's slug once a transaction that moved its pointer has committed, in
# the process that published: the API's snapshot cache (fairvalue/item_reads.py) drops its
# entry there, so a read right after a publish in the same process sees the new snapshot.
publish_listeners: list[Callable[[str], None]] = []


def _notify_after_commit(session: Session, slug: str) -> None:
    def notify(_session) -> None:
        for listener in publish_listeners:
            listener(slug)

    event.listen(session, "after_commit", notify, once=True)


def publish(session: Session, collection: Collection, snapshot: NowcastSnapshot) -> bool:
    """Point readers at `snapshot` unless a snapshot of a later moment is already published
    (overlapping nowcast runs must not move the pointer backwards). Returns whether it moved."""
    current = session.exec(
        select(PublishedSnapshot).where(PublishedSnapshot.collection_id == collection.id).with_for_update()
    ).first()
    now = utcnow()
    if current is not None:
        current_snapshot = session.get(NowcastSnapshot, current.snapshot_id)
        if current_snapshot is not None and current_snapshot.as_of > snapshot.as_of:
            session.execute(
                update(NowcastSnapshot.__table__)
                .where(NowcastSnapshot.id == snapshot.id)
                .values(status=SUPERSEDED)
            )
            set_committed_value(snapshot, "status", SUPERSEDED)
            return False
        current.snapshot_id = snapshot.id
        current.published_at = now
        session.add(current)
    else:
        session.add(PublishedSnapshot(collection_id=collection.id, snapshot_id=snapshot.id, published_at=now))
    session.execute(
        update(NowcastSnapshot.__table__)
        .where(NowcastSnapshot.id == snapshot.id)
        .values(status=PUBLISHED, published_at=now)
    )
    # The object says what the row now says (no second write): callers read its published_at.
    set_committed_value(snapshot, "status", PUBLISHED)
    set_committed_value(snapshot, "published_at", now)
    _notify_after_commit(session, collection.slug)
    return True


class SignalRules(NamedTuple):
    """The thresholds a snapshot's signals were judged at (models.signals.market_signals)."""

    buy_below: float | None
    sell_above: float | None
    max_age_days: float | None

    @classmethod
    def of(cls, settings) -> SignalRules:
        """The thresholds `settings` (fairvalue.settings.Settings) judge signals at, as kind.value_all does."""
        return cls(settings.buy_below, settings.sell_above, settings.signal_max_age_days)

    @classmethod
    def recorded(cls, snapshot, settings) -> SignalRules:
        """The thresholds `snapshot` (a NowcastSnapshot, or a row with its signal_* columns) recorded;
        `settings`' for a snapshot made before migration 0017, which recorded none."""
        if snapshot.signal_buy_below is None:
            return cls.of(settings)
        return cls(snapshot.signal_buy_below, snapshot.signal_sell_above, snapshot.signal_max_age_days)


@dataclass(frozen=True)
class PublishedValue:
    snapshot_id: int
    as_of: datetime
    published_at: datetime
    model_version_id: int
    item_key: str
    fair_value: float
    p10: float | None
    p90: float | None
    signal: str
    last_price: float | None
    last_sale_at: datetime | None
    valued_at: datetime | None  # the snapshot's (NowcastSnapshot.valued_at; null before migration 0007)
    ask_price: float | None = None  # the item's open ask at the nowcast (models/listings.py), if any
    ask_at: datetime | None = None
    # The snapshot's thresholds (NowcastSnapshot.signal_*; null before migration 0017)
    signal_buy_below: float | None = None
    signal_sell_above: float | None = None
    signal_max_age_days: float | None = None
    # The price the signal read and its deviation, as the nowcast judged them, when the snapshot
    # recorded them (NowcastSnapshot.signal_prices_recorded; not before migration 0019)
    signal_basis: str | None = None
    deviation: float | None = None
    signal_prices_recorded: bool = False


def read_published(
    session: Session, collection: Collection, item_keys: list[str] | None = None
) -> list[PublishedValue]:
    """Values of the published snapshot, read in ONE statement so a concurrent publish can
    never give a mix of two snapshots."""
    stmt = (
        select(
            NowcastSnapshot.id, NowcastSnapshot.as_of, NowcastSnapshot.published_at,
            NowcastSnapshot.model_version_id, NowcastRow.item_key, NowcastRow.fair_value,
            NowcastRow.p10, NowcastRow.p90, NowcastRow.signal, NowcastRow.last_price,
            NowcastRow.last_sale_at, NowcastSnapshot.valued_at, NowcastRow.ask_price, NowcastRow.ask_at,
            NowcastSnapshot.signal_buy_below, NowcastSnapshot.signal_sell_above, NowcastSnapshot.signal_max_age_days,
            NowcastRow.signal_basis, NowcastRow.deviation, NowcastSnapshot.signal_prices_recorded,
        )
        .select_from(PublishedSnapshot)
        .join(NowcastSnapshot, NowcastSnapshot.id == PublishedSnapshot.snapshot_id)
        .join(NowcastRow, NowcastRow.snapshot_id == NowcastSnapshot.id)
        .where(PublishedSnapshot.collection_id == collection.id)
    )
    if item_keys is not None:
        stmt = stmt.where(NowcastRow.item_key.in_(item_keys))
    return [PublishedValue(*row) for row in session.exec(stmt).all()]


def _published_items_statement(with_attributes: bool):
    """The API's item reads: collection, items, published values and model version in one Core
    statement, built once. Four ORM statements per request cost ~7 ms here, mostly in the ORM
    (bench/api.py); one statement is also one view of the data under a concurrent publish. Bulk
    reads leave out the items' attributes (JSON decoded per row, and not in their answer)."""
    item_columns = (Item.item_type, Item.attributes) if with_attributes else ()
    return (
        sa_select(
            Collection.currency, Item.item_key, *item_columns,
            NowcastSnapshot.id.label("snapshot_id"), NowcastSnapshot.as_of, NowcastSnapshot.valued_at,
            NowcastSnapshot.published_at,
            NowcastSnapshot.model_version_id, ModelVersion.version.label("model_version"),
            NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90, NowcastRow.signal, NowcastRow.last_price,
            NowcastRow.last_sale_at, NowcastRow.ask_price, NowcastRow.ask_at,
            NowcastSnapshot.signal_buy_below, NowcastSnapshot.signal_sell_above, NowcastSnapshot.signal_max_age_days,
            NowcastRow.signal_basis, NowcastRow.deviation, NowcastSnapshot.signal_prices_recorded,
        )
        .select_from(Collection)
        .join(Item, and_(Item.collection_id == Collection.id, Item.item_key.in_(bindparam("keys", expanding=True))))
        .outerjoin(PublishedSnapshot, PublishedSnapshot.collection_id == Collection.id)
        .outerjoin(NowcastSnapshot, NowcastSnapshot.id == PublishedSnapshot.snapshot_id)
        .outerjoin(NowcastRow, and_(NowcastRow.snapshot_id == NowcastSnapshot.id,
                                    NowcastRow.item_key == Item.item_key))
        .outerjoin(ModelVersion, ModelVersion.id == NowcastSnapshot.model_version_id)
        .where(Collection.slug == bindparam("slug"))
    )


PUBLISHED_ITEMS = {True: _published_items_statement(True), False: _published_items_statement(False)}


def read_published_items(connection: Connection, slug: str, item_keys: list[str],
                         with_attributes: bool = True) -> list[Row]:
    """One row per known item of `item_keys` in collection `slug`: the item, and its value in the
    published snapshot (value columns None while no published snapshot holds it). No row for an
    unknown item, or when the collection does not exist."""
    return list(connection.execute(PUBLISHED_ITEMS[with_attributes], {"slug": slug, "keys": item_keys}))


POINTER = (
    sa_select(PublishedSnapshot.snapshot_id, PublishedSnapshot.published_at, NowcastSnapshot.n_items)
    .select_from(Collection)
    .join(PublishedSnapshot, PublishedSnapshot.collection_id == Collection.id)
    .join(NowcastSnapshot, NowcastSnapshot.id == PublishedSnapshot.snapshot_id)
    .where(Collection.slug == bindparam("slug"))
)


def read_pointer(connection: Connection, slug: str) -> Row | None:
    """(snapshot_id, published_at, n_items) of the collection's published snapshot; None when the
    collection does not exist or has published nothing. One small indexed query."""
    return connection.execute(POINTER, {"slug": slug}).first()


SNAPSHOT_ITEMS = (
    sa_select(
        Collection.currency, Item.item_key, Item.item_type, Item.attributes,
        NowcastSnapshot.id.label("snapshot_id"), NowcastSnapshot.as_of, NowcastSnapshot.valued_at,
        NowcastSnapshot.published_at,
        NowcastSnapshot.model_version_id, ModelVersion.version.label("model_version"),
        NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90, NowcastRow.signal, NowcastRow.last_price,
        NowcastRow.last_sale_at, NowcastRow.ask_price, NowcastRow.ask_at,
        NowcastSnapshot.signal_buy_below, NowcastSnapshot.signal_sell_above, NowcastSnapshot.signal_max_age_days,
        NowcastRow.signal_basis, NowcastRow.deviation, NowcastSnapshot.signal_prices_recorded,
    )
    .select_from(NowcastSnapshot)
    .join(Collection, Collection.id == NowcastSnapshot.collection_id)
    .join(NowcastRow, NowcastRow.snapshot_id == NowcastSnapshot.id)
    .join(Item, and_(Item.collection_id == Collection.id, Item.item_key == NowcastRow.item_key))
    .outerjoin(ModelVersion, ModelVersion.id == NowcastSnapshot.model_version_id)
    .where(NowcastSnapshot.id == bindparam("snapshot_id"), Collection.slug == bindparam("slug"),
           NowcastRow.fair_value.is_not(None))
)


def read_snapshot_items(connection: Connection, slug: str, snapshot_id: int) -> list[Row]:
    """Every valued item of one snapshot of collection `slug`, in the columns of
    read_published_items (attributes included). Items the snapshot does not value are left out."""
    return list(connection.execute(SNAPSHOT_ITEMS, {"slug": slug, "snapshot_id": snapshot_id}))


def published_snapshot(session: Session, collection: Collection) -> NowcastSnapshot | None:
    return session.exec(
        select(NowcastSnapshot)
        .join(PublishedSnapshot, PublishedSnapshot.snapshot_id == NowcastSnapshot.id)
        .where(PublishedSnapshot.collection_id == collection.id)
    ).first()


def published_as_of(session: Session) -> dict[str, datetime]:
    """The moment each collection's published snapshot values (its as_of), by slug: how recent
    the values readers are served are, whoever made them (tasks.beat credits its nowcast by it)."""
    rows = session.exec(select(Collection.slug, NowcastSnapshot.as_of)
                        .join(PublishedSnapshot, PublishedSnapshot.collection_id == Collection.id)
                        .join(NowcastSnapshot, NowcastSnapshot.id == PublishedSnapshot.snapshot_id)).all()
    return {slug: as_of for slug, as_of in rows}


def snapshot_counts(session: Session, collection: Collection) -> tuple[int, int, int]:
    """The collection's stored snapshots (any status), how many of them retention thinned
    (storage/retention.py), and the rows they hold."""
    stored, thinned = session.exec(select(func.count(), func.count(NowcastSnapshot.rows_thinned_at))
                                   .where(NowcastSnapshot.collection_id == collection.id)).one()
    rows = session.exec(select(func.count()).select_from(NowcastRow).join(
        NowcastSnapshot, NowcastSnapshot.id == NowcastRow.snapshot_id).where(
        NowcastSnapshot.collection_id == collection.id)).one()
    return stored, thinned, rows


def published_times(session: Session, coll: Collection, statuses: tuple[str, ...], model_version_id: int | None = None,
                    since=None) -> pd.DataFrame:
    """When each snapshot of these statuses was published (snapshot_id, published_at naive UTC,
    model_version_id), oldest first; from a day before `since`, so the snapshot a sale just after
    it was scored against is among them."""
    query = select(NowcastSnapshot.id, NowcastSnapshot.published_at, NowcastSnapshot.model_version_id).where(
        NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status.in_(statuses),
        NowcastSnapshot.published_at.is_not(None))
    if model_version_id is not None:
        query = query.where(NowcastSnapshot.model_version_id == model_version_id)
    if since is not None:
        query = query.where(NowcastSnapshot.published_at >= since - timedelta(days=1))
    rows = session.exec(query.order_by(NowcastSnapshot.published_at)).all()
    frame = pd.DataFrame(rows, columns=["snapshot_id", "published_at", "model_version_id"])
    frame["published_at"] = naive_utc(frame["published_at"])
    return frame


def values_of_items(session: Session, snapshot_ids: list[int], item_keys: list[str]) -> pd.DataFrame:
    """The values (fair_value, p10, p90) these snapshots gave these items."""
    return pd.DataFrame(
        session.exec(select(NowcastRow.snapshot_id, NowcastRow.item_key, NowcastRow.fair_value, NowcastRow.p10,
                            NowcastRow.p90).where(NowcastRow.snapshot_id.in_(snapshot_ids),
                                                  NowcastRow.item_key.in_(item_keys))).all(),
        columns=["snapshot_id", "item_key", "fair_value", "p10", "p90"])


def unarchived_snapshots(session: Session, collection: Collection) -> list[int]:
    """Published snapshots whose archive is missing (the store was down), newest first."""
    return list(session.exec(
        select(NowcastSnapshot.id).where(NowcastSnapshot.collection_id == collection.id,
                                         NowcastSnapshot.status == PUBLISHED,
                                         NowcastSnapshot.archive_uri.is_(None))
        .order_by(NowcastSnapshot.id.desc())
    ).all())


def snapshot_values(session: Session, snapshot_id: int) -> pd.DataFrame:
    """A stored snapshot's rows in the form and the item order the nowcast produced them (naive
    UTC times), and in its columns (row_columns), so the archive rebuilt from them is the
    nowcast's to the byte."""
    columns = row_columns(session.exec(select(NowcastSnapshot.signal_prices_recorded)
                                       .where(NowcastSnapshot.id == snapshot_id)).one())
    rows = session.exec(
        select(*(getattr(NowcastRow, c) for c in columns)).where(NowcastRow.snapshot_id == snapshot_id)
    ).all()
    values = pd.DataFrame(sorted(rows, key=lambda row: item_order(row[0])), columns=list(columns))
    for column in TIME_COLUMNS:
        values[column] = pd.to_datetime(values[column], utc=True).dt.tz_localize(None)
    return values


def snapshot_csv(values: pd.DataFrame) -> str:
    """The rows of a snapshot as CSV text, the one form both the database and the archive get:
    6 significant digits, UTC ISO times with Z, empty for none (format_times, format_floats).
    With each signal's basis and deviation when `values` hold them (every nowcast's do), the
    deviation exactly as judged: it is already rounded to the decimals answers have, on the side
    of a threshold its signal is (models.signals.market_signals); 6 significant digits of
    1.4999990 would read 1.5."""
    columns = row_columns(set(SIGNAL_PRICE_COLUMNS) <= set(values.columns))
    frame = values.reindex(columns=list(columns))  # a kind without asks (cards) leaves them empty
    for column in TIME_COLUMNS:
        frame[column] = format_times(frame[column])
    for column in NUMBER_COLUMNS:
        frame[column] = format_floats(frame[column].to_numpy(dtype=float))
    if "deviation" in frame:
        frame["deviation"] = format_floats(frame["deviation"].to_numpy(dtype=float), "%r")
    return frame.to_csv(index=False, lineterminator="\n")


def format_times(values: pd.Series) -> np.ndarray:
    """UTC ISO times with Z (whole seconds when every time is), "" for none, formatted by numpy:
    pandas' per-value strftime was a third of a 1M-item nowcast."""
    ts = pd.to_datetime(values).to_numpy().astype("datetime64[us]")
    missing = np.isnat(ts)
    if missing.all():  # the asks of a market without listings: 1M NaT took 0.30 s to format, this 0.02 s
        return np.full(len(ts), "", dtype=object)
    whole_seconds = bool((ts[~missing] == ts[~missing].astype("datetime64[s]")).all())
    text = np.datetime_as_string(ts, unit="s" if whole_seconds else "us", timezone="UTC")
    return np.where(missing, "", text)


def format_floats(values: np.ndarray, form: str = "%.6g") -> np.ndarray:
    """Each value as "%.6g" (or `form`), "" for NaN: the text of to_csv(float_format="%.6g") at a
    fifth of its cost (a 1M-item snapshot spent 10 s there). Only the numbers are formatted, so a
    column that is mostly empty (the asks) costs next to nothing."""
    text = np.full(len(values), "", dtype=object)
    given = ~np.isnan(values)
    text[given] = [form % value for value in values[given].tolist()]
    return text


def rebuilt_archive(session: Session, snapshot_id: int) -> bytes:
    """The archive file of a snapshot whose rows are whole, rebuilt from them."""
    return snapshot_csv_gz(snapshot_values(session, snapshot_id))


def snapshot_csv_gz(values: pd.DataFrame | None = None, rows_csv: str | None = None) -> bytes:
    """The archive form of a snapshot: gzip'd CSV, deterministic (mtime 0) so equal
    snapshots have equal sha256. Level 1: level 9 took 9x longer for 13 % fewer bytes."""
    text = rows_csv if rows_csv is not None else snapshot_csv(values)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=1) as gz:
        gz.write(text.encode())
    return buf.getvalue()
