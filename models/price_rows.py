"""Validation of daily price observations (date, card, market price[, volume]).

Pure: rows in, clean observations and rejections (with the row kept whole and the reason) out.
The same rules apply to a CSV backfill and to what the price API answers (rows_from_api turns a
card's answer into rows first), so a bad value from either is kept with the same reasons.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

from models.validation import (
    EARLIEST_SALE,
    MAX_PRICE,
    Reason,
    Rejection,
    feed_number,
    id_refusal,
    normalised_id,
    unreadable_number,
)

MAX_VOLUME = 2**31 - 1  # the column is a 32-bit integer


class PriceReason:
    MALFORMED_ROW = "malformed_row"
    MISSING_FIELD = "missing_field"
    MALFORMED_DATE = "malformed_date"
    FUTURE_DATE = "future_date"
    BEFORE_COLLECTION = Reason.BEFORE_COLLECTION  # the sales' name: one reason for both markets
    MALFORMED_PRICE = "malformed_price"
    NON_POSITIVE_PRICE = "non_positive_price"
    MALFORMED_VOLUME = "malformed_volume"
    UNKNOWN_ITEM = "unknown_item"
    CONFLICT_IN_BATCH = "conflicting_price_in_batch"
    IMPLAUSIBLE_PRICE = "implausible_price"
    MALFORMED_RESPONSE = "malformed_response"
    NO_PRICE = "no_price_in_response"


ALIASES = {"card_id": ("card_id", "card", "item_id", "item_key"), "date": ("date", "day"),
           "market_price": ("market_price", "price", "market"), "volume": ("volume",)}
REQUIRED = ("date", "card_id", "market_price")


@dataclass(frozen=True)
class PriceObservation:
    item_key: str
    day: date
    price: float
    volume: int | None
    # The row as given, for a rejection decided after validate_row (implausible_price); not part of the value.
    row: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


def _pick(row: Mapping[str, Any], name: str) -> Any:
    for key in ALIASES[name]:
        if key in row and row[key] not in (None, ""):
            return row[key]
    return None


# A day as YYYY-MM-DD, alone or with a time of that day ("2025-07-04T12:00:00Z", "2025-07-04 12:00:00 UTC"),
# which names the day as written; anything else after the date ("2025-07-04xyz") names none.
DAY_TEXT = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
                      r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z| ?UTC|[+-][0-9]{2}:?[0-9]{2})?)?")


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):  # 20250704 as a number is no date (models.validation refuses it too)
        return None
    match = DAY_TEXT.fullmatch(value.strip())
    try:
        return date.fromisoformat(match[1]) if match else None
    except ValueError:  # 2025-02-30
        return None


def validate_row(row: Any, known_items: set[str], today: date,
                 first_day: date | None = None) -> PriceObservation | Rejection:
    """A price as stored, or why it is refused. `first_day`: the collection's first day of trading,
    when known (collections.first_day, from the card universe); a price before it is a broken feed."""
    if not isinstance(row, Mapping) or "_error" in row:
        detail = row.get("_error", "not a mapping") if isinstance(row, Mapping) else "not a mapping"
        return Rejection(dict(row) if isinstance(row, Mapping) else {"_raw": repr(row)[:2000]},
                         PriceReason.MALFORMED_ROW, str(detail))
    raw = dict(row)
    missing = [n for n in REQUIRED if _pick(row, n) is None]
    if missing:
        return Rejection(raw, PriceReason.MISSING_FIELD, f"missing {', '.join(missing)}")
    day = _day(_pick(row, "date"))
    if day is None:
        return Rejection(raw, PriceReason.MALFORMED_DATE, f"{_pick(row, 'date')!r} is not a YYYY-MM-DD date")
    if day > today:
        return Rejection(raw, PriceReason.FUTURE_DATE, f"{day} is after today ({today})")
    if day < EARLIEST_SALE.date():
        return Rejection(raw, PriceReason.MALFORMED_DATE, f"{day} is before {EARLIEST_SALE.date()}")
    if first_day is not None and day < first_day:
        return Rejection(raw, PriceReason.BEFORE_COLLECTION,
                         f"{day} is before the collection's first day of trading, {first_day}")
    card = _pick(row, "card_id")
    if why := id_refusal("card_id", card):  # a JSON file's 5.0 is the card "5", as it is the punk "5"
        return Rejection(raw, PriceReason.MALFORMED_ROW, why)
    item = normalised_id(card)
    if item not in known_items:
        return Rejection(raw, PriceReason.UNKNOWN_ITEM, f"no card {item!r} in the collection")
    price = feed_number(_pick(row, "market_price"))
    if price is None:
        value = _pick(row, "market_price")
        return Rejection(raw, PriceReason.MALFORMED_PRICE, f"price {value!r} {unreadable_number(value)}")
    if price <= 0:
        return Rejection(raw, PriceReason.NON_POSITIVE_PRICE, f"price {price} is not positive")
    if price > MAX_PRICE:
        return Rejection(raw, PriceReason.MALFORMED_PRICE, f"price {price:g} is above {MAX_PRICE:g}, no market price")
    volume_raw = _pick(row, "volume")
    volume = None
    if volume_raw is not None:
        number = feed_number(volume_raw)
        if number is None:
            return Rejection(raw, PriceReason.MALFORMED_VOLUME,
                             f"volume {volume_raw!r} {unreadable_number(volume_raw)}")
        if not 0 <= number <= MAX_VOLUME or number != int(number):
            return Rejection(raw, PriceReason.MALFORMED_VOLUME, f"volume {volume_raw!r} is not a count")
        volume = int(number)
    return PriceObservation(item, day, price, volume, raw)


@dataclass
class ValidatedPrices:
    clean: list[PriceObservation]
    rejected: list[Rejection]
    repeated_in_batch: int  # the same (card, day, price) twice: counted as a duplicate, stored once


def validate_prices(rows: Iterable[Any], known_items: set[str], today: date,
                    first_day: date | None = None) -> ValidatedPrices:
    """Validate every row (validate_row). A (card, day) given twice at the same price is a duplicate:
    counted, stored once, as the row with a volume when one has it (a row without one says nothing
    about it; such a pair was refused as a conflict). Given twice with different prices, or with two
    different volumes, it keeps the first and rejects the later one (a file that contradicts itself
    is worth a look, not a silent pick)."""
    clean: dict[tuple[str, date], PriceObservation] = {}
    rejected: list[Rejection] = []
    repeated = 0
    for row in rows:
        result = validate_row(row, known_items, today, first_day)
        if isinstance(result, Rejection):
            rejected.append(result)
            continue
        key = (result.item_key, result.day)
        first = clean.get(key)
        if first is None:
            clean[key] = result
        elif first.price != result.price:
            rejected.append(Rejection(dict(row), PriceReason.CONFLICT_IN_BATCH,
                                      f"{result.item_key} on {result.day} is also priced {first.price} in this batch"))
        elif None in (first.volume, result.volume) or first.volume == result.volume:
            repeated += 1
            if first.volume is None and result.volume is not None:
                clean[key] = result  # keeps its place in the batch's order
        else:
            rejected.append(Rejection(dict(row), PriceReason.CONFLICT_IN_BATCH,
                                      f"{result.item_key} on {result.day} is also priced {first.price} with volume "
                                      f"{first.volume} in this batch"))
    return ValidatedPrices(list(clean.values()), rejected, repeated)


# How many of the batch's next prices of a card judge a price with none before it: with one or two,
# a typo among them could refuse the right price.
MIN_AHEAD = 3


@dataclass(frozen=True)
class JumpRule:
    """How far a card's price may move from its recent prices before it is taken for a typo.

    A price is implausible when it is below 1/max_jump or above max_jump times the median of the
    card's last `last_n` prices on the `window_days` days before its day. A card with no price in
    that window (a new card, one back after a gap in its feed, or one whose real move was refused
    for so long that its window emptied) is judged by the batch's own next prices of it instead,
    when it holds at least MIN_AHEAD of them within the window after its day: a typo on the first day
    back would otherwise become the reference that refuses the right prices after it. With fewer it
    is not checked, and its new level is taken. A day already stored is never judged by the days
    after it: the collector stores each day as it comes, so it has no next prices for its first day
    back, and a later run must not refuse (as a kept rejection) a price that stays stored."""
    max_jump: float
    last_n: int
    window_days: int


def refuse_implausible(batch: ValidatedPrices, stored: Mapping[str, Mapping[date, float]],
                       rule: JumpRule) -> ValidatedPrices:
    """The batch with each price far from its card's recent prices (JumpRule) moved to the rejected,
    kept with its row as `implausible_price`. `stored`: card -> day -> stored price, at least the
    rule's window before the batch's days. The batch's own accepted prices of earlier days count as
    recent too (over a stored one of the same day: they replace it), so a file's first backfill is
    checked as well as a day's collection; days are taken in order, so a typo cannot vouch for a
    later day."""
    # Per card, its known days in order and their prices: a window is a slice found by bisection,
    # so a year of history for ten thousand cards costs no sort per row.
    known: dict[str, tuple[list[date], list[float]]] = {}
    for card, by_day in stored.items():
        ordered = sorted(by_day.items())
        known[card] = ([d for d, _ in ordered], [p for _, p in ordered])
    kept: list[PriceObservation] = []
    refused: list[Rejection] = []
    window = timedelta(days=rule.window_days)
    in_order = sorted(batch.clean, key=lambda o: (o.item_key, o.day))
    for position, obs in enumerate(in_order):
        days, prices = known.setdefault(obs.item_key, ([], []))
        end = bisect_left(days, obs.day)
        start = max(bisect_left(days, obs.day - window), end - rule.last_n)
        recent = prices[start:end]
        stored_day = end < len(days) and days[end] == obs.day  # the batch's days are distinct: this one is stored
        looked_ahead = not recent and not stored_day  # nothing before it: the batch's next prices, if enough
        if looked_ahead:
            ahead = [o.price for o in in_order[position + 1:position + 1 + max(rule.last_n, MIN_AHEAD)]
                     if o.item_key == obs.item_key and o.day <= obs.day + window]
            recent = ahead if len(ahead) >= MIN_AHEAD else []
        if recent:
            reference = median(recent)
            if not reference / rule.max_jump <= obs.price <= reference * rule.max_jump:
                which = (f"next {len(recent)} price(s) in this batch (none within {rule.window_days} days before)"
                         if looked_ahead else f"last {len(recent)} price(s) within {rule.window_days} days")
                refused.append(Rejection(
                    dict(obs.row) if obs.row is not None else _row_of(obs), PriceReason.IMPLAUSIBLE_PRICE,
                    f"price {obs.price:g} is over {rule.max_jump:g}x away from {reference:g}, the median of "
                    f"{obs.item_key}'s {which}"))
                continue
        if stored_day:  # the batch's price of a stored day replaces it
            prices[end] = obs.price
        else:
            days.insert(end, obs.day)
            prices.insert(end, obs.price)
        kept.append(obs)
    order = {id(o): i for i, o in enumerate(batch.clean)}
    kept.sort(key=lambda o: order[id(o)])  # the batch's order, as validate_prices gave it
    return ValidatedPrices(kept, [*batch.rejected, *refused], batch.repeated_in_batch)


def _row_of(obs: PriceObservation) -> dict[str, Any]:
    return {"date": obs.day.isoformat(), "card_id": obs.item_key, "market_price": obs.price, "volume": obs.volume}


def _card_object(body: Any) -> Mapping[str, Any] | None:
    """The card in an answer: {"data": [card]}, {"data": card} or the card itself."""
    if isinstance(body, Mapping) and "data" in body:
        data = body["data"]
        if isinstance(data, list):
            return data[0] if data and isinstance(data[0], Mapping) else None
        return data if isinstance(data, Mapping) else None
    return body if isinstance(body, Mapping) and ("priceHistory" in body or "prices" in body) else None


def rows_from_api(item_key: str, body: Any, fetched_on: date) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Rows (for validate_prices) from a PokemonPriceTracker-v2-shaped answer for one card.

    `priceHistory` maps dates to a price (or to {"market": price, "volume": n}); without it (absent,
    null or empty) the card's current `prices.market` is the price of the day of `prices.lastUpdated`
    (else of `fetched_on`). An answer with neither is one rejection, the body kept; so is one whose
    `priceHistory`, `prices` or `prices.lastUpdated` is there but cannot be read (a list of prices,
    a day that is no date), rather than read past: the day's price would silently be another one."""
    def refuse(reason: str, detail: str) -> tuple[list[dict[str, Any]], list[Rejection]]:
        return [], [Rejection({"card_id": item_key, "body": _excerpt(body)}, reason, detail)]

    card = _card_object(body)
    if card is None:
        return refuse(PriceReason.MALFORMED_RESPONSE, "the answer holds no card object")
    history = card.get("priceHistory")
    # None and [] (an empty object as a PHP API writes one) are no history; false, 0, "" are no object
    if not (history is None or history == [] or isinstance(history, Mapping)):
        return refuse(PriceReason.MALFORMED_RESPONSE,
                      f"priceHistory is a {_json_type(history)}, not an object of dates to prices")
    rows: list[dict[str, Any]] = []
    if history:
        for day, value in history.items():
            if isinstance(value, Mapping):
                rows.append({"date": day, "card_id": item_key, "market_price": value.get("market", value.get("price")),
                             "volume": value.get("volume")})
            else:
                rows.append({"date": day, "card_id": item_key, "market_price": value})
        return rows, []
    prices = card.get("prices")
    if prices is not None and not isinstance(prices, Mapping):
        return refuse(PriceReason.MALFORMED_RESPONSE, f"prices is a {_json_type(prices)}, not an object")
    market = prices.get("market") if prices is not None else None
    if market is None:
        return refuse(PriceReason.NO_PRICE, "no priceHistory and no prices.market")
    stamp = prices.get("lastUpdated")
    updated = fetched_on if stamp is None or (isinstance(stamp, str) and not stamp.strip()) else _day(stamp)
    if updated is None:
        return refuse(PriceReason.MALFORMED_RESPONSE,
                      f"prices.lastUpdated {str(stamp)[:40]!r} is not a YYYY-MM-DD date: the day of prices.market "
                      "is not known")
    return [{"date": updated.isoformat(), "card_id": item_key, "market_price": market}], []


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for a refusal: a list is an "array", a str a "string"."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _excerpt(body: Any) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text[:2000]
