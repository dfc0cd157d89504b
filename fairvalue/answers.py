"""How every read writes its answer and checks its parameters: times as ISO text with a Z, floats
rounded (None for a missing value), item keys, time windows, pages, and HIDDEN in place of the
people a caller without an operator token may not see. No database and no HTTP here: every read
and the CLI share these, so an answer reads the same wherever it comes from.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from fairvalue.errors import BadInput

# An item id and a collection slug as every read takes them; the OpenAPI document publishes these
# same patterns (api.openapi.PATH_PARAMS), so a client's generated request is one the read takes.
ITEM_KEY_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
SLUG_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
ITEM_KEY = re.compile(ITEM_KEY_PATTERN + r"\Z")  # \Z: "$" also matches before a final newline
ITEM_KEYS = re.compile(rf"{ITEM_KEY_PATTERN}(?:,{ITEM_KEY_PATTERN})*\Z")  # a comma-separated list of them, nothing else
MAX_BULK_IDS = 1000
MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # the furthest page offset a read takes
# The times a read takes: the years 1970 to 2200, through the end of 2200 (`to=2200-12-31`
# reads through that day: its window ends at the next midnight).
EARLIEST_TIME, LATEST_TIME = datetime(1970, 1, 1, tzinfo=UTC), datetime(2201, 1, 1, tzinfo=UTC)
MAX_WINDOW_DAYS = 3700  # the longest window a market or track-record read answers (~10 years)


# --- formatting ---------------------------------------------------------------------------

def iso(ts: datetime | date | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return ts.isoformat()


def iso_text(value: Any) -> Any:
    """A time stored as ISO text, written as iso() writes times: a naive one (UTC, as every time
    here) gains its Z. Anything else (a date, a number, text that is no time) is kept as it is.
    For JSON stored before its times were written with iso()."""
    if not isinstance(value, str) or len(value) <= 10:  # a date has no time of day to mark
        return value
    try:
        return iso(datetime.fromisoformat(value))
    except ValueError:
        return value


def rounded(value: float | None, digits: int = 6) -> float | None:
    """A float for JSON, None for a missing value (None, NaN, pandas' NA). Plain float checks:
    pd.isna per value was about a tenth of a 100-id bulk valuation (pyinstrument)."""
    if value is None:
        return None
    try:
        number = float(value)
    except TypeError:  # pandas' NA and NaT
        return None
    return None if math.isnan(number) else round(number, digits)


def rounded_all(value: Any, digits: int = 6) -> Any:
    """An answer the pure core built whole (its dicts and lists) made ready for JSON: every float
    rounded as rounded() rounds one (an explanation's effects came straight from the model,
    0.12345678901234568), an infinite one None (JSON has no infinity), numpy's integers plain ones
    and every key text."""
    if isinstance(value, dict):
        return {str(key): rounded_all(v, digits) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded_all(v, digits) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isinf(value) else rounded(value, digits)  # NaN: rounded's None
    return value


# --- parameters -----------------------------------------------------------------------------

def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """The one of `choices` a parameter names (a signal, a decision, a request's state), in any case,
    as the answers spell it: ?signal=buy and ?signal=Buy are BUY, as ?type= and ?trait= match their
    values; ?decision=PROMOTE is promote (it was a 400, while any case of a signal was taken).
    Anything else is a 400 naming them all, ASCII letters only ("ſell".upper() is "SELL")."""
    for choice in choices:
        if value.isascii() and value.lower() == choice.lower():
            return choice
    raise BadInput(f"{name} must be one of {', '.join(choices)} (in any case), got {value[:40]!r}")


def check_item_key(key: str) -> str:
    if not isinstance(key, str) or not ITEM_KEY.match(key):
        raise BadInput(f"malformed item id {str(key)[:80]!r}: use letters, digits, _ . : - (max 64)")
    return key


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO date (midnight UTC) or date-time (UTC when it has no offset), or None."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name} must be an ISO date or date-time, got {value[:40]!r}") from None
    # The year as given first (converting a time near year 9999 to UTC overflows), and 2201 is not
    # one of the years: `from=2201-01-01` was taken, while the OpenAPI document says 1970 to 2200.
    if not EARLIEST_TIME.year <= parsed.year < LATEST_TIME.year:
        raise BadInput(f"{name} must be between the years 1970 and 2200")
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if not EARLIEST_TIME <= parsed <= LATEST_TIME:
        raise BadInput(f"{name} must be between the years 1970 and 2200")
    return parsed


def is_bare_date(value: str) -> bool:
    """Whether `value` names a day and no time of it. A bare date as `to` counts the whole day, as
    a date input on a page means it (`to=2021-12-31` reads through the 31st); a date-time is where
    the window ends (exclusive). Every form of a date parse_time takes counts: told apart by a
    pattern of the extended form alone, `to=20211231` (a basic ISO date) ended at the 31st's
    midnight, a day short of `to=2021-12-31`."""
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True



def parse_window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """?from=&to= of every windowed read (market, performance, backtest, an item's history),
    parsed and checked here alone: each as given (parse_time), `to` then made exclusive, and a
    window that ends after EARLIEST_TIME (nothing is before it) and, both given, after `from`.
    `to=1969-12-31` was made 1970-01-01 before the years were checked, and answered 200: an
    empty window before the epoch. None for a bound not given (each read has its defaults)."""
    t0, t1 = parse_time(start, "from"), parse_time(end, "to")
    if t1 is not None and is_bare_date(end):
        t1 += timedelta(days=1)
        if t1 > LATEST_TIME:  # 2201-01-01 is the end of the range, not a day in it
            raise BadInput("to must be between the years 1970 and 2200")
    if t1 is not None and t1 <= EARLIEST_TIME:
        raise BadInput(f"to must be after {iso(EARLIEST_TIME)}, the earliest time a read takes")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise BadInput("to must be after from")
    return t0, t1


def default_start(t1: datetime, span: timedelta) -> datetime:
    """The `from` of a window not given one: `span` before its end, never before EARLIEST_TIME."""
    return max(t1 - span, EARLIEST_TIME)


def _moment(ts: datetime) -> str:
    """A window bound as a person reads it: the day for a midnight, else the UTC time."""
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.date().isoformat()
    return iso(ts)


def check_window(t0: datetime, t1: datetime, default_to: str | None = None) -> None:
    """BadInput unless [t0, t1) is a window of at most MAX_WINDOW_DAYS. `default_to` says what `to`
    defaulted to when none was given ("a second after the latest sale"): a `from` past the data
    is then refused naming that default, not as if the caller had given a `to` before it."""
    if t1 <= t0 and default_to is None:
        raise BadInput("to must be after from")
    if t1 <= t0:
        raise BadInput(f"from {_moment(t0)} is not before the default to, {_moment(t1)} ({default_to}); "
                       "give an earlier from, or a to")
    if t1 - t0 > timedelta(days=MAX_WINDOW_DAYS):
        raise BadInput("the window may span at most ~10 years")


def page_bounds(limit: int | None, offset: int | None, default: int = 50) -> tuple[int, int]:
    limit = default if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit must be between 1 and {MAX_PAGE}")
    if not 0 <= offset <= MAX_OFFSET:
        raise BadInput("offset must be between 0 and 1e9")
    return limit, offset


def snapshot_reference(snapshot_id: int, as_of, valued_at, published_at) -> dict[str, Any]:
    """How an answer names the snapshot its values come from. `as_of` is when the nowcast was
    asked for; `valued_at` the moment the items were valued at (the same, unless the market had
    gone silent: models.nowcast.valuation_moment; null in snapshots older than that column)."""
    return {"id": snapshot_id, "as_of": iso(as_of), "valued_at": iso(valued_at), "published_at": iso(published_at)}


# --- who acted ------------------------------------------------------------------------------

# Who acted and where a worker runs are for operators: a read for a caller without an operator
# token (people=False) keeps each key but says HIDDEN in place of an operator's name (a token's
# name, "cli:<login>", a pauser's user@host) and a worker's host, pid or claim token.
HIDDEN = "hidden"


def hidden(value: Any, people: bool) -> Any:
    return value if people or value is None else HIDDEN


def error_head(text: Any, people: bool) -> Any:
    """An exception's recorded text as a reader without an operator token sees it (unless
    `people`): its head alone, what comes before its first colon or parenthesis ("ArtifactError",
    "artifact of version 3 could not be read"). The rest can name a host, an address or a path:
    a database error names its server, an artifact store's its endpoint, bucket and keys."""
    if people or not isinstance(text, str):
        return text
    return text.split(":", 1)[0].split(" (", 1)[0]


# What the artifact store told of an artifact it could not give back: where it keeps it (its
# bucket and keys) and its error (its endpoint too). For operators, as who acted: a refusal's
# decision records them in its numbers (fairvalue.lifecycle.champion_changes.artifact_refusal).
STORE_DETAIL = ("artifact_uri", "store_error")


def without_operator(numbers: Any, people: bool) -> Any:
    """A decision's numbers or a request's trigger, its "operator" key and the store's words
    (STORE_DETAIL) hidden unless `people`."""
    if people or not isinstance(numbers, dict):
        return numbers
    out = {key: hidden(value, people) if key in STORE_DETAIL else value for key, value in numbers.items()}
    if numbers.get("operator") not in (None, True):
        out["operator"] = HIDDEN
    return out
