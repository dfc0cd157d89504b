"""Sale validation: every incoming row is either a clean sale or a rejection with a reason.

Pure: the caller supplies what is known (items, floors) and stores both outcomes.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

from models.times import SECOND, TIME_PRECISIONS, default_time_precision

# Accepted spellings of each column: the bundled CSV says punk_id / price_eth.
COLUMN_ALIASES = {
    "event_id": ("event_id", "id"),
    "timestamp": ("timestamp", "ts", "time"),
    "item_key": ("item_key", "item_id", "punk_id"),
    "price": ("price", "price_eth"),
    "seller": ("seller",),
    "buyer": ("buyer",),
    "source": ("source",),
    "time_precision": ("time_precision",),
}
REQUIRED = ("event_id", "timestamp", "item_key", "price")
# What a sale has and a listing has not: who sold to whom. A file naming either is a file of sales,
# so `ingest listings` refuses it whole (storage.bundled; models.listings.LISTING_ONLY the reverse).
SALE_ONLY = ("seller", "buyer")
# Every key a sale is read by, its aliases included. A row naming another is refused (a webhook's
# call, a JSON file's row), not read with that key ignored: a "currency": "USD" was stored as ETH.
SALE_KEYS = tuple(name for names in COLUMN_ALIASES.values() for name in names)
TEXT_FIELDS = ("event_id", "item_key", "seller", "buyer", "source", "time_precision")
ID_FIELDS = ("event_id", "item_key")  # each read by id_refusal and normalised_id
# Every text field of a sale (an id, an address, a source name) fits in this many characters; a
# longer one is a broken feed, and a 4,000-character address overflowed PostgreSQL's index on
# the parties, which failed every webhook call committed with it.
MAX_TEXT_LENGTH = 200
FUTURE_SLACK = timedelta(minutes=5)
# No market this service values traded before the Unix epoch; an earlier time is a broken
# feed, and before 1677 it would not even fit the models' nanosecond timestamps.
EARLIEST_SALE = datetime(1970, 1, 1, tzinfo=UTC)
# Far above any collectible's sale in any currency, far below where squared errors overflow:
# a price past it is a unit or parsing mistake (1e200 was accepted and broke training metrics).
MAX_PRICE = 1e12


class Reason:
    MALFORMED_ROW = "malformed_row"
    MISSING_FIELD = "missing_field"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    MALFORMED_PRICE = "malformed_price"
    NON_POSITIVE_PRICE = "non_positive_price"
    UNKNOWN_ITEM = "unknown_item"
    BELOW_FLOOR_FRACTION = "below_floor_fraction"
    DUPLICATE_CONFLICT = "duplicate_event_conflict"
    MALFORMED_TIME_PRECISION = "malformed_time_precision"
    BEFORE_COLLECTION = "before_collection"


@dataclass(frozen=True)
class CleanSale:
    event_id: str
    ts: datetime
    item_key: str
    price: float
    seller: str
    buyer: str
    source: str
    time_precision: str = SECOND  # models.times.TIME_PRECISIONS; not part of content_hash, like the source
    # The row as it was sent, for the rejection it becomes if its event id turns out to be stored
    # with other content (a rejected row is kept whole); not part of what the sale is.
    row: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @cached_property  # read at least twice per sale (dedupe in the batch, the stored row)
    def content_hash(self) -> str:
        """What makes two reports of one event the same: everything but where it came from."""
        text = "|".join(
            [self.event_id, self.ts.isoformat(), self.item_key, repr(self.price), self.seller, self.buyer]
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Rejection:
    row: dict[str, Any]
    reason: str
    detail: str
    # Of a clean event refused because an earlier row of its batch gives its id other content
    # (validate_each): its content hash. Once the batch is stored, the store judges it against
    # what its id holds, as if it came alone: stored before the batch with this row's content, it
    # is a duplicate, not a conflict (storage.ingest.judge_contested).
    contested_hash: str | None = field(default=None, compare=False, repr=False)

    @property
    def event_id(self) -> str | None:
        # Normalised as a stored sale's is (" e2" is "e2", 7.0 is "7"): the reports leave out a
        # refusal whose event is stored as a sale after all, and compare the two texts.
        value = _pick(self.row, "event_id")
        key = normalised_id(value)[:200] if value is not None else ""
        return key or None

    @property
    def row_hash(self) -> str:
        text = repr(sorted((str(k), str(v)) for k, v in self.row.items())) + "|" + self.reason
        return hashlib.sha256(text.encode()).hexdigest()


# The floor a price is checked against is the latest one, unless it is more than SPIKE_RATIO
# times the lowest of the FLOOR_CHECK_DAYS observed floors before it; then that many times the
# lowest. The source's column can sit far above every sale for days (2020-12-06..10 it read
# 11.6 .. 36.99 in a 3 ETH market, and 0.2 x 36.99 refused all six sales of 12-11), while the
# market itself has not tripled in a week since 2018: the 2021 run-up took months.
FLOOR_CHECK_DAYS = 7
SPIKE_RATIO = 3.0


class FloorLookup:
    """The floor known before a day: the latest of an earlier day (the bundled series has gaps),
    held to SPIKE_RATIO times the lowest of the FLOOR_CHECK_DAYS observed days before it. A day's
    floor is made from that day's sales, so a live webhook never has it yet; a replay from files
    must not use it either, or the two would refuse different sales."""

    def __init__(self, floors: Mapping[date, float]):
        items = sorted((d, f) for d, f in floors.items() if f is not None and f > 0)
        self.days = [d for d, _ in items]
        self.values = [f for _, f in items]

    def before(self, day: date) -> float | None:
        i = bisect.bisect_left(self.days, day)
        if not i:
            return None
        return min(self.values[i - 1], SPIKE_RATIO * min(self.values[max(0, i - FLOOR_CHECK_DAYS):i]))


def foreign_number_text(text: str) -> bool:
    """Whether `text` is one Python's float() reads but no feed writes: "1_000" (1000), or digits
    other than ASCII's ("١٢٣" Arabic-Indic, "１２" full-width; a feed writes 0-9)."""
    return "_" in text or not text.isascii()


def feed_number(value: Any) -> float | None:
    """A finite number as a feed writes one (a JSON number or its text), else None: not a
    boolean, and not a text float() reads but no feed writes (foreign_number_text)."""
    if isinstance(value, bool) or (isinstance(value, str) and foreign_number_text(value)):
        return None
    try:
        out = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float's range
        return None
    return out if math.isfinite(out) else None


def unreadable_number(value: Any) -> str:
    """Why feed_number read no number in `value`, to follow the value in a rejection's detail."""
    if isinstance(value, str) and not value.isascii():
        return "is not a number written in ASCII (a feed writes 0-9)"
    if isinstance(value, str) and "_" in value:
        return 'is not a number as a feed writes one (no "_" between digits)'
    return "is not a finite number"


def _usable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _pick(row: Mapping[str, Any], field: str) -> Any:
    """The row's value of `field` under the first of its names that gives one; an empty text gives
    way to another name's value (price "" beside price_eth 5), and is the value when none gives
    one. The one reading of a field: validation's (_pick_all) and the look-ups' before it
    (item_key_of, sale_day_of) must agree, or a webhook looked up the blank name's item and day
    and validated the other's (the item refused as unknown, the floor of its day never checked)."""
    blank = None
    for name in COLUMN_ALIASES[field]:
        value = row.get(name)
        if _usable(value):
            if not (isinstance(value, str) and not value.strip()):
                return value
            blank = value
    return blank


def _pick_all(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of COLUMN_ALIASES read once (validation reads each several times); _pick of
    each, inlined: this runs for every row of a file (bench/ingest.py)."""
    values = {}
    for column, names in COLUMN_ALIASES.items():
        blank = None  # an empty cell of one name gives way to another name's value (price "" beside price_eth 5)
        for name in names:
            value = row.get(name)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                if not (isinstance(value, str) and not value.strip()):
                    break
                blank = value
        else:
            value = blank
        values[column] = value
    return values


def _given(value: Any) -> bool:
    return _usable(value) and not (isinstance(value, str) and not value.strip())


# The fields whose aliases must agree when a row gives several: which item and at what price
# are the sale. An `id` beside `event_id` may be the sender's own row id, and a `ts` beside a
# `timestamp` the same moment spelt otherwise; there the canonical name wins, as before.
MUST_AGREE = ("item_key", "price")


def _alias_conflict(row: Mapping[str, Any]) -> str | None:
    """Why the row is ambiguous: two names of an item or a price (`price` and `price_eth`, say)
    holding different values; _pick would silently take the first. None when it is not."""
    for column in MUST_AGREE:
        present = [name for name in COLUMN_ALIASES[column] if name in row]
        if len(present) < 2:  # a CSV's rows name one of each: no value to read
            continue
        given = [(name, row[name]) for name in present if _given(row[name])]
        if len(given) < 2:
            continue
        # An item by its normalised key (a float would merge ids past 2**53), a price by its number.
        read = [normalised_id(value) if column == "item_key" else feed_number(value) for _, value in given]
        same = (len(set(read)) == 1 if None not in read
                else len({str(value).strip() for _, value in given}) == 1)
        if not same:
            return f"{column} is given twice with different values: " + ", ".join(
                f"{name}={str(value)[:40]!r}" for name, value in given)
    return None


def kind_refusal(name: str, value: Any) -> str | None:
    """Why `value` is neither text nor a finite number, or None: what a text field (text_refusal)
    and an id (id_refusal) both refuse. `name` names the field in the refusal."""
    # A boolean is no text: str() would make true the event "True", and false an empty party.
    if isinstance(value, dict | list | bool):
        return f"{name} must be text or a number, not {type(value).__name__}"
    # JSON's 1e400 reads as inf: as text every such id was the one event "inf" (2e400 its conflict).
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} is a number past a float's range"
    return None


def text_refusal(values: Mapping[str, Any], names: Iterable[str]) -> str | None:
    """Why one of the text fields `names` of a row (read by _pick) cannot be stored, or None."""
    for name in names:
        value = values[name]
        if why := kind_refusal(name, value):
            return why
        if isinstance(value, str) and "\x00" in value:  # no database stores NUL in text
            return f"{name} contains a NUL character"
        if value is not None and len(str(value).strip()) > MAX_TEXT_LENGTH:
            return f"{name.replace('_', ' ')} longer than {MAX_TEXT_LENGTH} characters"
    return None


def id_refusal(name: str, value: Any) -> str | None:
    """Why `value` names no id (an event's, an item's, a card's), or None. An id is text or a whole
    number, read as normalised_id reads it (5 and 5.0 are both "5"); a number with a fraction
    names none (5.5 is no punk and no card), nor does a boolean, a list or an object (kind_refusal).
    Only the kind of value: a card id is not held to text_refusal's NUL and length checks."""
    if isinstance(value, float) and math.isnan(value):  # JSON's NaN, which models.json_input reads
        return f"{name} is NaN, not an id"  # before kind_refusal, which would call it past a float's range
    if why := kind_refusal(name, value):
        return why
    if isinstance(value, float) and not value.is_integer():
        return f"{name} {value!r} is not a whole number"
    return None


def item_key_of(row: Mapping[str, Any]) -> str:
    """The item key a raw row names, normalised as validation compares it (5.0 -> "5")."""
    return normalised_id(_pick(row, "item_key"))


def normalised_id(value: Any) -> str:
    """An id (an event's, an item's, a card's) as it is stored and compared: its text, stripped,
    and a whole float as the integer it is (5.0 is "5", as 5 is: a JSON file may write either).
    Takes what id_refusal lets through; a float with a fraction would keep it ("5.5")."""
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return text.strip()


def sale_time_of(row: Mapping[str, Any]) -> datetime | None:
    """The UTC time a raw row says it sold at, or None when it has no readable timestamp (a
    number is none, as validate_row refuses it)."""
    try:
        return parse_timestamp(_pick(row, "timestamp"))
    except (ValueError, TypeError, OverflowError):
        return None


def sale_day_of(row: Mapping[str, Any]) -> date | None:
    """The UTC day a raw row says it sold on, or None when it has no readable timestamp."""
    ts = sale_time_of(row)
    return None if ts is None else ts.date()


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 text (or a datetime) as an aware UTC datetime; ValueError for anything else,
    a number included: 20210601 would read as a date."""
    if isinstance(value, datetime):
        ts = value
    elif not isinstance(value, str):
        raise ValueError(f"timestamp must be ISO 8601 text, not {type(value).__name__}")
    else:
        text = str(value).strip()
        if not text:
            raise ValueError("empty timestamp")
        ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    # A timestamp without an offset is read as UTC, the convention of every source we load.
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)  # OverflowError at year 1/9999
    if ts < EARLIEST_SALE:
        raise ValueError(f"{ts.isoformat()} is before {EARLIEST_SALE.date().isoformat()}")
    return ts


def event_head(row: Mapping[str, Any], values: Mapping[str, Any], text_fields: Iterable[str], now: datetime,
               first_day: date | None) -> tuple[str, datetime] | Rejection:
    """The checks every event makes, a sale or a listing: its aliases agree, its text can be stored,
    and its id and time are usable; (event id, time), or the rejection. `values`: the row's fields
    as _pick reads them; `first_day`: the collection's first day of trading, when known."""
    def reject(reason: str, detail: str) -> Rejection:
        return Rejection(dict(row), reason, detail)

    conflict = _alias_conflict(row)
    if conflict:
        return reject(Reason.MALFORMED_ROW, conflict)
    refusal = text_refusal(values, text_fields) or next(
        (why for name in ID_FIELDS if (why := id_refusal(name, values[name]))), None)
    if refusal:
        return reject(Reason.MALFORMED_ROW, refusal)
    event_id = normalised_id(values["event_id"])  # 7.0 is the event "7", as it is the item "7"
    if len(event_id) > MAX_TEXT_LENGTH:  # 1e250 reads as 251 digits, past the stored column
        return reject(Reason.MALFORMED_ROW, f"event id longer than {MAX_TEXT_LENGTH} characters once read")
    try:
        ts = parse_timestamp(values["timestamp"])
    except (ValueError, TypeError, OverflowError) as exc:
        return reject(Reason.MALFORMED_TIMESTAMP, str(exc))
    if ts > now + FUTURE_SLACK:
        return reject(Reason.FUTURE_TIMESTAMP, f"{ts.isoformat()} is after {now.isoformat()}")
    if first_day is not None and ts.date() < first_day:
        return reject(Reason.BEFORE_COLLECTION,
                      f"{ts.isoformat()} is before the collection's first day of trading, {first_day}")
    return event_id, ts


def validate_row(
    row: Mapping[str, Any],
    known_items: set[str],
    floors: FloorLookup,
    min_floor_fraction: float,
    now: datetime,
    first_sale_day: date | None = None,
) -> CleanSale | Rejection:
    """A sale as stored, or why it is refused. `first_sale_day`: the collection's first day of
    trading, when known (storage.ingest.first_sale_day); a sale before it is a broken feed."""
    def reject(reason: str, detail: str) -> Rejection:
        return Rejection(dict(row), reason, detail)  # the row kept whole, copied only when refused

    if "_error" in row:  # the reader could not parse this line; it is kept as text
        return reject(Reason.MALFORMED_ROW, str(row["_error"]))
    values = _pick_all(row)
    missing = [f for f in REQUIRED if values[f] is None or (isinstance(values[f], str) and not values[f].strip())]
    if missing:
        return reject(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
    head = event_head(row, values, TEXT_FIELDS, now, first_sale_day)
    if isinstance(head, Rejection):
        return head
    event_id, ts = head
    price_value = values["price"]
    price = feed_number(price_value)
    if price is None:
        return reject(Reason.MALFORMED_PRICE, f"price {price_value!r} {unreadable_number(price_value)}")
    if price > MAX_PRICE:
        return reject(Reason.MALFORMED_PRICE, f"price {price:g} is above {MAX_PRICE:g}, no sale price")
    if price <= 0:
        return reject(Reason.NON_POSITIVE_PRICE, f"price {price}")
    source = str(values["source"] or "").strip()
    precision = str(values["time_precision"] or "").strip().lower() or default_time_precision(source)
    if precision not in TIME_PRECISIONS:
        return reject(Reason.MALFORMED_TIME_PRECISION,
                      f"time_precision {values['time_precision']!r} is none of {', '.join(TIME_PRECISIONS)}")
    item_key = normalised_id(values["item_key"])
    if item_key not in known_items:
        return reject(Reason.UNKNOWN_ITEM, f"no item {item_key!r} in this collection")
    floor = floors.before(ts.date())
    if floor is not None and price < min_floor_fraction * floor:
        return reject(
            Reason.BELOW_FLOOR_FRACTION,
            f"price {price} < {min_floor_fraction} x floor {floor} known before {ts.date()}",
        )
    return CleanSale(
        event_id=event_id,
        ts=ts,
        item_key=item_key,
        price=price,
        # Stripped as the other fields are: "a, b" in a CSV must not make " b" a different party
        # (a false conflict with the stored sale) or " " a party at all (a false self-trade).
        seller=str(values["seller"] or "").strip().lower(),
        buyer=str(values["buyer"] or "").strip().lower(),
        source=source,
        time_precision=precision,
        row=row,
    )


@dataclass
class ValidatedBatch:
    clean: list[CleanSale]
    rejected: list[Rejection]
    repeated_in_batch: int  # the same event, same content, sent twice in one batch


def validate_batch(
    rows: Iterable[Mapping[str, Any]],
    known_items: set[str],
    floors: FloorLookup,
    min_floor_fraction: float,
    now: datetime | None = None,
    first_sale_day: date | None = None,
) -> ValidatedBatch:
    now = now or datetime.now(UTC)
    return ValidatedBatch(*validate_each(
        rows, lambda row: validate_row(row, known_items, floors, min_floor_fraction, now, first_sale_day)))


def validate_each(rows: Iterable[Mapping[str, Any]], validate: Callable[[Mapping[str, Any]], Any]
                  ) -> tuple[list, list[Rejection], int]:
    """(clean, rejected, repeated): each row through `validate` (a clean event with `event_id` and
    `content_hash`, or a Rejection), one clean event kept per event id; the same event again is
    counted as repeated, other content under its id refused as a conflict naming the id (with its
    content hash: the store judges it again against what its id holds, Rejection.contested_hash)."""
    clean: dict[str, Any] = {}
    rejected: list[Rejection] = []
    repeated = 0
    for row in rows:
        outcome = validate(row)
        if isinstance(outcome, Rejection):
            rejected.append(outcome)
            continue
        seen = clean.get(outcome.event_id)
        if seen is None:
            clean[outcome.event_id] = outcome
        elif seen.content_hash == outcome.content_hash:
            repeated += 1
        else:
            rejected.append(Rejection(
                dict(row), Reason.DUPLICATE_CONFLICT,
                f"event id {outcome.event_id[:100]!r} is given earlier in this batch with different content",
                contested_hash=outcome.content_hash))
    return list(clean.values()), rejected, repeated
