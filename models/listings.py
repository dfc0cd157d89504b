"""Listings (asks): validation of incoming listing events, and the ask open at a moment.

A listing event says that an item is offered at a price on a source (a marketplace) from a
moment on (`price` a number), or that its offer there was withdrawn (`price` null). Each source
keeps its own offer: the item's latest event of that source before t, if it offers a price, has
not expired (`expires_at`), and no sale of the item may have come at or after it (a sale fills
or ends every offer: the item changed hands; on CryptoPunks the contract clears it). The item's
open ask at t is the lowest of those offers.

An open ask under the fair value is a BUY the user can act on now, where a last sale is only
what someone paid (models/nowcast.py). Pure: storage/listings.py stores both outcomes of
validation, storage.market.load_listings reads the book back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from models.times import naive_utc
from models.validation import (
    COLUMN_ALIASES,
    MAX_PRICE,
    Reason,
    Rejection,
    _given,
    _pick,
    event_head,
    feed_number,
    normalised_id,
    parse_timestamp,
    unreadable_number,
    validate_each,
)

LISTING_TEXT_FIELDS = ("event_id", "item_key", "source")
EXPIRES_AT = "expires_at"
# What a listing has and a sale has not: a file naming it is a file of listings, so `ingest sales`
# refuses it whole (storage.bundled; models.validation.SALE_ONLY the reverse).
LISTING_ONLY = (EXPIRES_AT,)
# The fields every listing event gives, beside its price (null withdraws: a missing one is its own reason).
REQUIRED_LISTING = ("event_id", "timestamp", "item_key")
LISTING_FIELDS = (*REQUIRED_LISTING, "price", "source")  # read under their COLUMN_ALIASES
# Every key a listing event is read by, its aliases included (models.validation.SALE_KEYS): an
# `expires` for `expires_at`, ignored, kept the ask open for ever.
LISTING_KEYS = (*(name for field in LISTING_FIELDS for name in COLUMN_ALIASES[field]), *LISTING_ONLY)


class ListingReason:
    """Why a listing event is refused, past the reasons a sale shares (models.validation.Reason)."""

    MISSING_PRICE = "missing_price"  # a listing must say its price, or null for a withdrawal
    MALFORMED_EXPIRY = "malformed_expiry"


@dataclass(frozen=True)
class CleanListing:
    event_id: str
    ts: datetime
    item_key: str
    price: float | None  # None: the offer was withdrawn
    expires_at: datetime | None
    source: str
    row: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def content_hash(self) -> str:
        """What makes two reports of one listing event the same: all of it, its source too (each
        source, a marketplace, keeps its own offer of the item)."""
        text = "|".join([self.event_id, self.ts.isoformat(), self.item_key, repr(self.price),
                         self.expires_at.isoformat() if self.expires_at else "", self.source])
        return hashlib.sha256(text.encode()).hexdigest()


def from_csv_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row of a listing event as JSON would give it: a CSV writes null as an empty cell. An
    empty expires_at is no expiry; empty price cells are a withdrawal when every price column is
    empty, and beside a price in another column (`price_eth`) an empty one is just not given."""
    def empty(value: Any) -> bool:
        return isinstance(value, str) and not value.strip()

    if "_error" in row:  # a line the reader could not parse: kept as it came
        return row
    out = dict(row)
    if empty(out.get(EXPIRES_AT)):
        out[EXPIRES_AT] = None
    prices = [name for name in COLUMN_ALIASES["price"] if name in out]
    blank = [name for name in prices if empty(out[name])]
    for name in blank:
        if len(blank) == len(prices):
            out[name] = None
        else:
            del out[name]
    return out


def _price_values(row: Mapping[str, Any]) -> list[Any]:
    """The row's price under each name it gives one by, null included: a withdrawal says
    `"price": null`, and a row that forgot the price must not read as one."""
    return [row[name] for name in COLUMN_ALIASES["price"] if name in row]


# An expiry this far out is a "never expires" marker (9999-12-31 is common); pandas' times end in
# 2262, so it is stored as no expiry rather than break every nowcast that reads it.
NEVER_EXPIRES_AFTER = datetime(2200, 1, 1, tzinfo=UTC)


def validate_listing(row: Mapping[str, Any], known_items: set[str], now: datetime,
                     first_day: date | None = None) -> CleanListing | Rejection:
    """A listing event as stored, or why it is refused (the checks a sale gets, where they apply)."""
    def reject(reason: str, detail: str) -> Rejection:
        return Rejection(dict(row), reason, detail)

    if "_error" in row:  # a file's line the reader could not parse (storage.bundled); kept as text
        return reject(Reason.MALFORMED_ROW, str(row["_error"]))
    values = {name: _pick(row, name) for name in LISTING_FIELDS}
    missing = [name for name in REQUIRED_LISTING if not _given(values[name])]
    if missing:
        return reject(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    prices = _price_values(row)
    if not prices:
        return reject(ListingReason.MISSING_PRICE, "missing price (null withdraws the listing)")
    if any(isinstance(p, float) and p != p for p in prices):  # NaN: neither a price nor a withdrawal
        return reject(Reason.MALFORMED_PRICE, "price NaN is not a finite number or null")
    if None in prices and any(p is not None for p in prices):
        return reject(Reason.MALFORMED_ROW, "price is given both as null and as a number")
    head = event_head(row, values, LISTING_TEXT_FIELDS, now, first_day)
    if isinstance(head, Rejection):
        return head
    event_id, ts = head
    expires_at = None
    if row.get(EXPIRES_AT) is not None:
        try:
            expires_at = parse_timestamp(row[EXPIRES_AT])
        except (ValueError, TypeError, OverflowError) as exc:
            return reject(ListingReason.MALFORMED_EXPIRY, f"expires_at: {exc}")
        if expires_at <= ts:
            return reject(ListingReason.MALFORMED_EXPIRY,
                          f"expires_at {expires_at.isoformat()} is not after the listing's {ts.isoformat()}")
        if expires_at >= NEVER_EXPIRES_AFTER:
            expires_at = None
    price = None
    if values["price"] is not None:
        price = feed_number(values["price"])
        if price is None:
            given = values["price"]
            return reject(Reason.MALFORMED_PRICE, f"price {given!r} {unreadable_number(given)} (null withdraws)")
        if price > MAX_PRICE:
            return reject(Reason.MALFORMED_PRICE, f"price {price:g} is above {MAX_PRICE:g}, no asking price")
        if price <= 0:
            return reject(Reason.NON_POSITIVE_PRICE, f"price {price} (null withdraws the listing)")
    elif expires_at is not None:
        return reject(ListingReason.MALFORMED_EXPIRY, "a withdrawal (price null) has no expiry")
    item_key = normalised_id(values["item_key"])
    if item_key not in known_items:
        return reject(Reason.UNKNOWN_ITEM, f"no item {item_key!r} in this collection")
    return CleanListing(event_id=event_id, ts=ts, item_key=item_key, price=price,
                        expires_at=expires_at, source=str(values["source"] or "").strip(), row=row)


@dataclass
class ValidatedListings:
    clean: list[CleanListing]
    rejected: list[Rejection]
    repeated_in_batch: int  # the same event, same content, sent twice in one batch


def validate_listings(rows: Iterable[Mapping[str, Any]], known_items: set[str], now: datetime,
                      first_day: date | None = None) -> ValidatedListings:
    """Every row clean or refused; one clean listing per event id (a second with other content is
    refused as a conflict, as for sales)."""
    return ValidatedListings(*validate_each(rows, lambda row: validate_listing(row, known_items, now, first_day)))


LISTING_COLUMNS = ("item_key", "source", "ts", "price", "expires_at")
# A sale of a listed item, as far as closing its ask goes: `ts` when it is known to have happened
# (stored), `latest` the latest it may have happened (the end of its hour for a sale known only
# to the hour: one recorded at 10:10 may have filled a listing of 10:30).
LISTING_SALE_COLUMNS = ("item_key", "ts", "latest")


@dataclass(frozen=True)
class ListingBook:
    """What a nowcast's signals read of the listings: listing events (LISTING_COLUMNS, naive-UTC
    times, price NaN for a withdrawal) and stored sales of listed items (LISTING_SALE_COLUMNS),
    wash trades included: any sale ends the offers it may have filled. open_asks takes any
    events and sales; storage.market.load_listings loads only those that decide a moment's asks."""

    events: pd.DataFrame
    sales: pd.DataFrame
    refused: dict[str, int] = field(default_factory=dict)  # a replay's listing files: rows refused, by reason
    complete_from: pd.Timestamp | None = None  # a replay's stored events: retention dropped replaced ones before it

    @classmethod
    def empty(cls) -> ListingBook:
        times = {"ts", "expires_at", "latest"}

        def frame(columns: tuple[str, ...]) -> pd.DataFrame:
            return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c in times else
                                              float if c == "price" else object) for c in columns})

        return cls(frame(LISTING_COLUMNS), frame(LISTING_SALE_COLUMNS))

    @cached_property
    def ask_index(self) -> _AskIndex:
        """The book arranged for open_asks, once: its frames are not changed after it is made."""
        return _AskIndex.of(self)


def book_order(events: pd.DataFrame) -> pd.DataFrame:
    """Listing events in the order the book reads them: by time, and of one instant as given, so
    that of an item's and source's events at one instant the last given is its offer (a store
    gives them in id order, storage.market.load_listings)."""
    return events.sort_values("ts", kind="stable")


def next_event_times(events: pd.DataFrame) -> np.ndarray:
    """For each listing event (item_key, source, ts), in the order of `events`, when the next
    event of its item and source in book order comes (NaT: none). One whose next comes at its own
    instant was replaced at once: open_asks never reads it as an offer."""
    ordered = book_order(events.reset_index(drop=True))
    keys = [ordered["item_key"].astype(str).to_numpy(), ordered["source"].astype(str).to_numpy()]
    out = np.full(len(ordered), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ordered.index.to_numpy()] = ordered["ts"].groupby(keys).shift(-1).to_numpy(dtype="datetime64[ns]")
    return out


@dataclass(frozen=True)
class _Timeline:
    """Rows of groups (codes 0..n-1) arranged so that each group's last row before a moment is one
    binary search away, however many rows the groups hold."""

    times: np.ndarray  # the distinct times, ascending (int64 ns)
    stamps: np.ndarray  # per row, grouped: group * (len(times) + 1) + the rank of its time, ascending
    starts: np.ndarray  # each group's first row

    @classmethod
    def of(cls, groups: np.ndarray, ts: np.ndarray, n_groups: int) -> tuple[_Timeline, np.ndarray]:
        """The timeline of rows given in time order (of one time, as given), and the order that
        arranges them by group (stable: each group's rows keep the order they were given in)."""
        order = np.argsort(groups, kind="stable")
        times = np.unique(ts)
        stamps = groups[order] * (len(times) + 1) + np.searchsorted(times, ts[order])
        return cls(times, stamps, np.searchsorted(groups[order], np.arange(n_groups))), order

    def last_before(self, at: np.datetime64) -> np.ndarray:
        """Each group's last row with time < at (of one time, the last given); -1: none."""
        rank = np.searchsorted(self.times, at.astype("datetime64[ns]").view(np.int64))  # distinct times before at
        first_not_before = np.searchsorted(self.stamps, np.arange(len(self.starts)) * (len(self.times) + 1) + rank)
        return np.where(first_not_before > self.starts, first_not_before - 1, -1)


def _times(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype="datetime64[ns]")


def _with_none(values: np.ndarray, none: Any) -> np.ndarray:
    """`values` and one more at the end: what a row -1 (last_before: none) reads."""
    return np.append(values, np.array([none], dtype=values.dtype))


NAT = np.datetime64("NaT", "ns")
LAST_MOMENT = np.datetime64(np.iinfo(np.int64).max, "ns")


@dataclass(frozen=True)
class _AskIndex:
    """A ListingBook arranged once for open_asks: a replay asks it at every tick (a quarter of
    half-hour ticks is 4,400 moments), and filtering the whole book each time grew with the book."""

    items: pd.Index  # the listed items; an item's code is its position
    offers: _Timeline  # the events, grouped by (item, source), an item's groups side by side
    offer_item: np.ndarray  # per group: its item's code (ascending)
    item_starts: np.ndarray  # per item: its first group
    ts: np.ndarray  # per event, in the offers' row order, and a none at the end
    price: np.ndarray
    expires: np.ndarray
    sales: _Timeline  # the sales of listed items, grouped by item
    sold_by: np.ndarray  # per sale row: the latest its item's sales up to it may have come, and a none

    @classmethod
    def of(cls, book: ListingBook) -> _AskIndex:
        events = book_order(book.events[book.events["ts"].notna()])
        item_codes, items = pd.factorize(events["item_key"])
        items = pd.Index(items, dtype=object)
        # Groups numbered in item order, so that an item's groups are a range to reduce over.
        keys = events.groupby([item_codes, events["source"].to_numpy()], dropna=False).ngroup().to_numpy()
        offers, order = _Timeline.of(keys, _times(events, "ts").view(np.int64), keys.max() + 1 if len(keys) else 0)
        offer_item = np.zeros(len(offers.starts), dtype=np.int64)
        offer_item[keys] = item_codes
        sales = book.sales[book.sales["ts"].notna() & book.sales["latest"].notna()].sort_values("ts", kind="stable")
        sale_items = items.get_indexer(sales["item_key"])
        sales, sale_items = sales[sale_items >= 0], sale_items[sale_items >= 0]
        sold, sale_order = _Timeline.of(sale_items, _times(sales, "ts").view(np.int64), len(items))
        sold_by = pd.Series(_times(sales, "latest")[sale_order]).groupby(sale_items[sale_order]).cummax()
        return cls(items, offers, offer_item, np.searchsorted(offer_item, np.arange(len(items))),
                   _with_none(_times(events, "ts")[order], NAT),
                   _with_none(events["price"].to_numpy(dtype=float)[order], np.nan),
                   _with_none(_times(events, "expires_at")[order], NAT), sold,
                   _with_none(sold_by.to_numpy(dtype="datetime64[ns]"), NAT))

    def lowest_open(self, at: np.datetime64) -> tuple[np.ndarray, np.ndarray]:
        """Each listed item's lowest open offer at `at` and when it was listed (NaN / NaT: none)."""
        row = self.offers.last_before(at)
        ts, price, expires = self.ts[row], self.price[row], self.expires[row]
        last_sold = self.sold_by[self.sales.last_before(at)][self.offer_item]
        is_open = (~np.isnan(price)
                   & ~(~np.isnat(last_sold) & (last_sold >= ts))  # a sale may have filled or ended it
                   & ~(~np.isnat(expires) & (expires <= at)))
        offered = np.where(is_open, price, np.inf)
        lowest = np.minimum.reduceat(offered, self.item_starts)
        at_lowest = is_open & (offered == lowest[self.offer_item])  # of one price, the earliest listed
        since = np.minimum.reduceat(np.where(at_lowest, ts, LAST_MOMENT), self.item_starts)
        some = np.isfinite(lowest)
        return np.where(some, lowest, np.nan), np.where(some, since, NAT)


def open_asks(book: ListingBook | None, item_keys: np.ndarray, at: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Each item's open ask at `at` (naive UTC), as (price, listed_at) arrays in the order of
    `item_keys`, NaN / NaT where there is none: the lowest offer among its sources, each source's
    offer its latest event before `at` (of one moment, the last given: book_order) if that offers
    a price, has not expired by `at`, and no sale stored before `at` may have come at or after it.
    The book is arranged for this once (ListingBook.ask_index), so each moment costs a few binary
    searches per listed item and source."""
    price = np.full(len(item_keys), np.nan)
    listed_at = np.full(len(item_keys), np.datetime64("NaT"), dtype="datetime64[ns]")
    if book is None or book.events.empty:
        return price, listed_at
    index = book.ask_index
    lowest, since = index.lowest_open(np.datetime64(pd.Timestamp(at).to_datetime64(), "ns"))
    codes = index.items.get_indexer(pd.Index(item_keys, dtype=object))
    found = codes >= 0
    price[found], listed_at[found] = lowest[codes[found]], since[codes[found]]
    return price, listed_at


REPLAY_LISTING_COLUMNS = ("event_id", *LISTING_COLUMNS)


# How much later than its recorded time a sale may have come: one known only to the hour.
SALE_TIME_SLACK = pd.Timedelta(hours=1)


def latest_moment(ts: pd.Series, hourly: np.ndarray) -> pd.Series:
    """The latest a sale may have happened: its time, or its hour's end when it is known only
    to the hour (LISTING_SALE_COLUMNS' `latest`)."""
    return ts.where(~hourly, ts.dt.floor("h") + SALE_TIME_SLACK)


def sale_latest(sales: pd.DataFrame) -> pd.Series:
    """latest_moment of sales given as ts and an optional hour_precision (a replay's frames)."""
    hourly = sales["hour_precision"].to_numpy(dtype=bool) if "hour_precision" in sales \
        else np.zeros(len(sales), dtype=bool)
    return latest_moment(pd.Series(naive_utc(sales["ts"]), index=sales.index), hourly)


def listing_frame(clean: Iterable[CleanListing]) -> pd.DataFrame:
    """Clean listing events as REPLAY_LISTING_COLUMNS (naive-UTC times, NaN price: withdrawal)."""
    rows = list(clean)
    return pd.DataFrame({
        "event_id": [c.event_id for c in rows], "item_key": [c.item_key for c in rows],
        "source": [c.source for c in rows],
        "ts": pd.Series([c.ts.replace(tzinfo=None) for c in rows], dtype="datetime64[ns]"),
        "price": pd.Series([np.nan if c.price is None else c.price for c in rows], dtype=float),
        "expires_at": pd.Series([c.expires_at.replace(tzinfo=None) if c.expires_at else pd.NaT for c in rows],
                                dtype="datetime64[ns]"),
    }, columns=list(REPLAY_LISTING_COLUMNS))


def listing_history(events: pd.DataFrame, sales: pd.DataFrame, refused: dict[str, int] | None = None) -> ListingBook:
    """A ListingBook of a whole history, for a replay: every event (REPLAY_LISTING_COLUMNS) and
    every sale (item_key, ts, optional hour_precision; wash trades included, since any sale ends
    an item's offers). open_asks reads only what came before the moment it is asked about."""
    latest = sale_latest(sales)
    # A sale known only to the hour is known once its hour is over (MarketData.before): its `ts`
    # here is when a replay's nowcast learns of it, as a stored sale's is when it was stored.
    book_sales = pd.DataFrame({"item_key": sales["item_key"].astype(str).to_numpy(), "ts": latest.to_numpy(),
                               "latest": latest.to_numpy()}, columns=list(LISTING_SALE_COLUMNS))
    ordered = book_order(events).reset_index(drop=True)
    return ListingBook(ordered[list(REPLAY_LISTING_COLUMNS)], book_sales, dict(refused or {}))
