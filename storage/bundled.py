"""Readers for the bundled market files (data/cryptopunks/*.csv) and backfill files.

Everything is read as text: a row we reject is kept exactly as it came.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from models.json_input import BadJson, loads, unknown_names
from models.validation import foreign_number_text

# (low, high) -> a database's sales of that range with their parties and flags (see market_data_from_files)
StoredSales = Callable[[Any, Any], Any]


def read_punks(path: Path) -> list[dict[str, Any]]:
    items = []
    with path.open(newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM
        for row in csv.DictReader(fh):
            accessories = [a.strip() for a in row["accessories"].split("/") if a.strip()]
            items.append(
                {
                    "item_key": str(int(row["id"])),
                    "item_type": row["type"],
                    "attributes": {
                        "gender": row["gender"],
                        "skin_tone": row["skin_tone"],
                        "accessory_count": int(row["accessory_count"]),
                        "accessories": accessories,
                    },
                }
            )
    return items


MARKET_COLUMNS = {"floor": "floor_eth", "eth_usd": "eth_usd"}  # a market day's figure -> its file's column


class BadMarketFile(ValueError):
    """A floor or ETH/USD file refused whole, its path first in the message: there is no place to
    keep a refused day, and a file read without its figures would value every sale without them."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


def read_market_days(floor_csv: Path | None, eth_usd_csv: Path | None) -> dict[date, dict[str, float]]:
    """{day: {"floor": ..., "eth_usd": ...}} from CSVs with the columns date,floor_eth and
    date,eth_usd; an empty cell is a day without that figure. BadMarketFile, naming the line, for a
    file whose header lacks either column (a `day,price` file was read as no days at all), a line
    that cannot be read, a day that is no ISO date or a figure that is no number above 0 (a
    traceback, or a floor of 0 or below read as any other)."""
    days: dict[date, dict[str, float]] = {}
    for path, key in ((floor_csv, "floor"), (eth_usd_csv, "eth_usd")):
        if path is None:
            continue
        for day, value in _market_file_days(path, MARKET_COLUMNS[key]):
            days.setdefault(day, {})[key] = value
    return days


def _market_file_days(path: Path, column: str) -> Iterator[tuple[date, float]]:
    """(day, figure) of each line of a market file that gives one, read line by line as a sales
    file is (_decoded_lines: blank lines skipped, a byte-order mark dropped)."""
    header: list[str] | None = None
    for lineno, text, decode_error in _decoded_lines(path):
        where = f"line {lineno}"
        if decode_error:
            raise BadMarketFile(path, f"{where}: {decode_error}")
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:  # an unclosed quote, a field past the csv module's size limit
            raise BadMarketFile(path, f"{where}: {exc}") from None
        if header is None:
            header = [name.strip() for name in fields]
            _check_market_header(path, header, column, lineno)
            continue
        if len(fields) != len(header):
            raise BadMarketFile(path, f"{where}: {len(fields)} fields where the header has {len(header)}")
        row = dict(zip(header, fields, strict=True))
        if row[column].strip() == "":
            continue
        yield _market_day(path, where, row["date"]), _market_figure(path, where, column, row[column])
    if header is None:
        _check_market_header(path, None, column)


def _market_day(path: Path, where: str, text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadMarketFile(path, f"{where}: date {text[:40]!r} is not a day (YYYY-MM-DD)") from None


def _market_figure(path: Path, where: str, column: str, text: str) -> float:
    try:
        if foreign_number_text(text):  # "1_000", "٦٥": float() reads them, a market file never holds them
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise BadMarketFile(path, f"{where}: {column} {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:  # a floor or a price of ETH is above 0
        raise BadMarketFile(path, f"{where}: {column} {text.strip()[:40]} must be a number above 0")
    return value


def _check_market_header(path: Path, header: list[str] | None, column: str, lineno: int = 1) -> None:
    """BadMarketFile unless the header (None: the file holds no line) names `date` and `column`."""
    needs = ", ".join(("date", column))
    if header is None:
        raise BadMarketFile(path, f"the file is empty; it needs the columns {needs}")
    if "date" not in header or column not in header:
        raise BadMarketFile(path, f"line {lineno}: the header names {', '.join(header)[:300]}; "
                                  f"the file needs the columns {needs}")


@dataclass(frozen=True)
class FileKind:
    """What a file of one kind of rows must name and must not. A CSV's header (a JSON row's keys)
    naming a column only another kind has is that kind's file: read as this one, a listing's ask
    would be stored as a sale. A header naming no column for a field every row needs would keep
    every row as a rejection (semicolons for commas, `punk` for `punk_id`): refused whole too."""

    noun: str  # "sales"; a `.json` document wraps its rows as {noun: [...]}
    needs: dict[str, tuple[str, ...]]  # each field a row must give -> the columns that may give it
    others: dict[str, str]  # a column only another kind's rows have -> that kind
    # The keys a JSON row may name (its webhook's: models.validation.SALE_KEYS); None: any.
    takes: tuple[str, ...] | None = None


def sales_kind() -> FileKind:
    from models.listings import LISTING_ONLY
    from models.validation import COLUMN_ALIASES, REQUIRED, SALE_KEYS

    return FileKind("sales", {f: COLUMN_ALIASES[f] for f in REQUIRED}, dict.fromkeys(LISTING_ONLY, "listings"),
                    SALE_KEYS)


def listings_kind() -> FileKind:
    from models.listings import LISTING_KEYS, REQUIRED_LISTING
    from models.validation import COLUMN_ALIASES, SALE_ONLY

    # A listing must name its price (an empty or null one withdraws), so the price column is needed too.
    return FileKind("listings", {f: COLUMN_ALIASES[f] for f in (*REQUIRED_LISTING, "price")},
                    {name: "sales" for f in SALE_ONLY for name in COLUMN_ALIASES[f]}, LISTING_KEYS)


def prices_kind() -> FileKind:
    from models.price_rows import ALIASES, REQUIRED

    return FileKind("prices", {f: ALIASES[f] for f in REQUIRED}, {})


def read_sales_file(path: Path) -> Iterator[dict[str, Any]]:
    """CSV (header row) or JSON lines, chosen by the file's suffix; a `.json` file may also hold
    one JSON document (an array of sales, `{"sales": [...]}`, or one sale). Read line by line,
    so a line that cannot be read (bad bytes, an unclosed quote, a missing field, JSON that
    models.json_input refuses) becomes one row with `_error`, kept as a rejection, and the lines
    after it are read as usual. No sale field holds a line break, so a quoted field spanning
    lines is one of those errors. An empty file, and one whose header is not a sales file's
    (FileKind), is refused whole (UnreadableFile) before any row is read."""
    return _read_event_file(path, sales_kind())


def read_listings_file(path: Path) -> Iterator[dict[str, Any]]:
    """A file of listing events, read as a sales file is (read_sales_file; `{"listings": [...]}`
    wraps a document's array). A CSV has no null, so its empty cells are read as JSON would give
    them (models.listings.from_csv_cells: an empty price withdraws); JSON keeps null and missing apart."""
    from models.listings import from_csv_cells

    rows = _read_event_file(path, listings_kind())
    yield from rows if path.suffix in JSON_SUFFIXES else map(from_csv_cells, rows)


def read_prices_file(path: Path) -> Iterator[dict[str, Any]]:
    """A file of daily card prices, read as a sales file is (`{"prices": [...]}` wraps a document's array)."""
    return _read_event_file(path, prices_kind())


JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _read_event_file(path: Path, kind: FileKind) -> Iterator[dict[str, Any]]:
    """The rows of a file of `kind`'s events (a generator: the checks run at the first row asked for).
    Nothing to read is a mistake, not 0 rows: an empty file, a header alone, an empty JSON list."""
    n_rows = 0
    for row in _event_rows(path, kind):
        n_rows += 1
        yield row
    if not n_rows:  # nothing was yielded, so nothing of it is stored
        raise UnreadableFile(f"the file holds no row of {kind.noun}: a header alone, or an empty list")


def _event_rows(path: Path, kind: FileKind) -> Iterator[dict[str, Any]]:
    if _is_empty(path):  # as an empty `.json` is (no document)
        raise UnreadableFile("the file is empty")
    if path.suffix == ".json" and not _first_line_is_an_event(path, kind.noun):
        yield from _of_kind(_json_document(path, kind.noun), kind)
        return
    lines = _decoded_lines(path)
    if path.suffix in JSON_SUFFIXES:
        yield from _of_kind(_json_rows(lines), kind)
    else:
        yield from _csv_rows(lines, kind)


def _is_empty(path: Path) -> bool:
    """Blank lines only (a spreadsheet's byte-order mark alone is blank too); stops at the first other."""
    with path.open("rb") as fh:
        return all(not line.removeprefix(b"\xef\xbb\xbf").strip() for line in fh)


def _another_kind(names: Iterable[str], kind: FileKind) -> str | None:
    """Why columns `names` are not `kind`'s (they name a column only another kind has), or None."""
    foreign = [name for name in names if name in kind.others]
    if not foreign:
        return None
    other = kind.others[foreign[0]]
    column = "columns" if len(foreign) > 1 else "a column"
    return (f"{', '.join(foreign)}, {column} of {other} and not of {kind.noun}: a file of another kind? "
            f"(`fairvalue ingest {other}`)")


def _of_kind(rows: Iterator[dict[str, Any]], kind: FileKind) -> Iterator[dict[str, Any]]:
    """JSON rows, checked as a CSV's header is: a first row with another kind's key refuses the
    file (nothing is stored yet); a later one is kept as a rejection, never stored as this kind.
    A JSON row may leave out a field it lacks, so a missing one stays the row's own rejection.
    A row naming a key `kind` is not read by is kept as a rejection naming it, as its webhook
    refuses it: read with the key ignored, a listing's `expires` kept its ask open for ever. (A
    CSV's extra columns are read past: an export carries them, and its header names them once.)"""
    first = True
    for row in rows:
        if "_error" in row:
            yield row
            continue
        why = _another_kind(row, kind)
        if why and first:
            raise UnreadableFile(f"the first row names {why}")
        first = False
        unknown = [str(key) for key in row if key not in kind.takes] if kind.takes is not None else []
        if why:
            yield {**row, "_error": f"the row names {why}"}
        elif unknown:
            yield {**row, "_error": unknown_names(unknown, kind.takes, "key", " in the row")}
        else:
            yield row


MAX_RAW = 2000  # of a line kept in a rejection


class UnreadableFile(ValueError):
    """A file whose header cannot be read: no row of it can be, so nothing of it is stored."""


@contextmanager
def named_file(path: Path) -> Iterator[None]:
    """An UnreadableFile raised inside names `path`: a replay reads several files, and the
    refusal has to say which (a command reading one names it itself)."""
    try:
        yield
    except UnreadableFile as exc:
        raise UnreadableFile(f"{path}: {exc}") from None


def _decoded_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, decoding error) of each non-blank line; a UTF-8 byte-order mark is
    dropped (spreadsheets write one) and undecodable bytes are shown as U+FFFD."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                yield lineno, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield lineno, raw.decode("utf-8", "replace"), f"not UTF-8: {exc.reason} at byte {exc.start}"


def _bad_line(lineno: int, text: str, error: str) -> dict[str, Any]:
    return {"_line": lineno, "_raw": text[:MAX_RAW], "_error": f"line {lineno}: {error}"}


def _json_rows(lines: Iterator[tuple[int, str, str | None]]) -> Iterator[dict[str, Any]]:
    for lineno, text, decode_error in lines:
        if decode_error:
            yield _bad_line(lineno, text, decode_error)
            continue
        try:
            value = loads(text, "the line")
        except BadJson as exc:
            yield _bad_line(lineno, text, str(exc)[:300])
            continue
        yield value if isinstance(value, dict) else _bad_line(lineno, text, "a line must hold a JSON object")


def _first_line_is_an_event(path: Path, wrapper: str) -> bool:
    """Whether a `.json` file is JSON lines: its first line one event object on its own (a bad line
    after it is then refused alone). Anything else is one document, read whole."""
    with path.open("rb") as fh:
        first = next((line for line in fh if line.strip()), b"").removeprefix(b"\xef\xbb\xbf")
    if not first.lstrip().startswith(b"{"):  # an array (json.dump's one line): a document, not parsed twice
        return False
    try:
        value = json.loads(first)
    except ValueError:  # also bytes that are not UTF-8
        return False
    return isinstance(value, dict) and not isinstance(value.get(wrapper), list) and _wrapper_of(value) is None


def _wrapper_of(value: Any) -> str | None:
    """The key of a document that is one key holding a list (`{"sales": [...]}`), else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
        return next(iter(value))
    return None


def _json_document(path: Path, wrapper: str) -> list[dict[str, Any]]:
    """The rows of a `.json` file holding one JSON document: an array of events, `{wrapper: [...]}`
    or one event. One that cannot be read is refused whole: no line of a pretty-printed one is a row."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        value = loads(raw.decode("utf-8"), "the file")
    except (UnicodeDecodeError, BadJson) as exc:
        raise UnreadableFile(f"the file is one JSON document that cannot be read ({str(exc)[:300]})") from None
    if isinstance(value, dict) and isinstance(value.get(wrapper), list):
        value = value[wrapper]
    elif (other := _wrapper_of(value)) is not None:
        raise UnreadableFile(f"the file wraps its rows as {other!r}, not {wrapper!r}: a file of another kind?")
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise UnreadableFile(f"the file holds neither an event, a list of events nor {{\"{wrapper}\": [...]}}")
    return [row if isinstance(row, dict) else
            {"_raw": json.dumps(row)[:MAX_RAW], "_error": f"entry {n} of the array: not a JSON object"}
            for n, row in enumerate(value, 1)]


def _csv_rows(lines: Iterator[tuple[int, str, str | None]], kind: FileKind) -> Iterator[dict[str, Any]]:
    header: list[str] | None = None
    for lineno, text, decode_error in lines:
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:  # an unclosed quote, a field past the csv module's size limit
            if header is None:
                raise UnreadableFile(f"line {lineno}: the header cannot be read ({exc})") from None
            yield _bad_line(lineno, text, str(exc))
            continue
        if header is None:
            if decode_error:  # a UTF-16 file, say: every row after it would be junk
                raise UnreadableFile(f"line {lineno}: the header cannot be read ({decode_error})")
            header = [name.strip() for name in fields]
            _check_header(header, kind, lineno)
            continue
        if decode_error:
            yield _bad_line(lineno, text, decode_error)
        elif len(fields) != len(header):
            yield _bad_line(lineno, text, f"{len(fields)} fields where the header has {len(header)}")
        else:
            yield dict(zip(header, fields, strict=True))


SEPARATORS = {";": "semicolons", "\t": "tabs"}


def _check_header(header: list[str], kind: FileKind, lineno: int) -> None:
    """UnreadableFile unless the header is `kind`'s: no other kind's column, one for each field a row needs."""
    if why := _another_kind(header, kind):
        raise UnreadableFile(f"line {lineno}: the header names {why}")
    if twice := sorted({name for name in header if header.count(name) > 1}):
        # a row would keep only the last of the two cells, and which one the sender meant is unknown
        raise UnreadableFile(f"line {lineno}: the header names {', '.join(repr(n) for n in twice)} twice")
    lacking = [f"{field} ({' or '.join(names)})" for field, names in kind.needs.items()
               if not any(name in header for name in names)]
    if not lacking:
        return
    has = ", ".join(header)
    message = (f"line {lineno}: the header names no column for {'; '.join(lacking)}, which every row of "
               f"{kind.noun} needs; its columns are: {has[:300]}")
    separator = next((SEPARATORS[s] for s in SEPARATORS if len(header) == 1 and s in header[0]), None)
    if separator:
        message += f" (one column holding {separator}: the file must be comma-separated)"
    raise UnreadableFile(message)


def market_data_from_files(
    punks_csv: Path, sales_files: list[Path], floor_files: list[Path], eth_usd_files: list[Path],
    min_floor_fraction: float, keep_wash_trades: bool = False, stored_sales: StoredSales | None = None,
    first_sale_day: date | None = None,
):
    """A MarketData straight from files, validated exactly as ingest validates (no database)
    and with suspected wash trades left out as ingest flags them: what `fairvalue replay`
    starts from when the database holds no sales. `excluded` holds what was left out, and why.
    The market days are the floor and ETH/USD files' in turn: a later file's figure for a day
    replaces an earlier one's, and its other days are added (the bundled history, then a replay's).
    `keep_wash_trades` keeps them in (bench/tune.py measures what leaving them out changes).

    `stored_sales(low, high)`, when given, returns a database's sales of that time range with
    their parties and flags (storage.wash.stored_sales_around): the files' sales are then
    flagged with them as evidence, and a stored clean sale that the files' sales make suspect
    is listed in `excluded` too (the caller leaves it out of the stored sales)."""
    import pandas as pd

    from models.features import ITEM_ATTRIBUTES, MarketData, attribute_text, excluded_frame
    from models.times import hour_precision
    from models.validation import FloorLookup, item_key_of, sale_time_of, validate_batch
    from models.wash import WINDOW, reasons_with_stored, wash_reasons

    items = read_punks(punks_csv)
    days: dict[date, dict[str, float]] = {}
    for floor_csv, eth_usd_csv in [*((path, None) for path in floor_files), *((None, path) for path in eth_usd_files)]:
        for day, figures in read_market_days(floor_csv, eth_usd_csv).items():
            days.setdefault(day, {}).update(figures)
    floors = FloorLookup({d: v.get("floor") for d, v in days.items()})
    known = {i["item_key"] for i in items}
    clean, refused_events, refused_unnamed = {}, {}, []
    for path in sales_files:
        with named_file(path):
            batch = validate_batch(read_sales_file(path), known, floors, min_floor_fraction,
                                   first_sale_day=first_sale_day)
        for sale in batch.clean:
            clean.setdefault(sale.event_id, sale)  # the first file to report an event wins
        for rejection in batch.rejected:  # so does a refused event's first report (files overlap)
            if rejection.event_id is None:
                refused_unnamed.append(rejection)
            else:
                refused_events.setdefault(rejection.event_id, rejection)
    # As the database's report does (storage.market.load_excluded): each refused event once, none
    # that a file gives as a clean sale after all, and the ones a window cannot hold counted apart.
    refused, unplaced = [], Counter()
    for rejection in [*refused_events.values(), *refused_unnamed]:
        if rejection.event_id in clean:
            continue
        if _placeable(sale_time_of(rejection.row)):
            refused.append(rejection)
        else:
            unplaced[rejection.reason] += 1
    item_frame = pd.DataFrame(
        {"item_key": [i["item_key"] for i in items], "item_type": [i["item_type"] for i in items],
         "accessory_count": [i["attributes"]["accessory_count"] for i in items],
         "accessories": [i["attributes"]["accessories"] for i in items]}
        | {name: [attribute_text(i["attributes"].get(name)) for i in items] for name in ITEM_ATTRIBUTES}
    ).set_index("item_key")
    sales = pd.DataFrame(
        {"event_id": [s.event_id for s in clean.values()],
         "ts": [s.ts.replace(tzinfo=None) for s in clean.values()],
         "item_key": [s.item_key for s in clean.values()],
         "price": [s.price for s in clean.values()],
         "seller": [s.seller for s in clean.values()],
         "buyer": [s.buyer for s in clean.values()],
         "hour_precision": hour_precision(s.time_precision for s in clean.values())}
    )
    sales["ts"] = pd.to_datetime(sales["ts"]).astype("datetime64[ns]")
    sales = sales.sort_values("ts", kind="stable").reset_index(drop=True)
    now_suspect = pd.DataFrame(columns=["event_id", "ts", "item_key", "price", "wash_reason"])
    if keep_wash_trades:
        wash = pd.Series(None, index=sales.index, dtype=object)
    elif stored_sales is not None and len(sales):
        around = stored_sales(sales["ts"].min() - WINDOW, sales["ts"].max() + WINDOW)
        wash, now_suspect = reasons_with_stored(sales, around)
    else:
        wash = wash_reasons(sales)
    flagged = sales[wash.notna()]
    excluded = excluded_frame(
        [*zip(flagged["event_id"], flagged["ts"], flagged["item_key"], flagged["price"], wash[flagged.index],
              flagged["hour_precision"], strict=True),
         *zip(now_suspect["event_id"], now_suspect["ts"], now_suspect["item_key"], now_suspect["price"],
              now_suspect["wash_reason"], strict=True),
         *((r.event_id, sale_time_of(r.row), item_key_of(r.row), None, r.reason) for r in refused)])
    sales = sales[wash.isna()].drop(columns=["seller", "buyer"]).reset_index(drop=True)
    market = pd.DataFrame(
        {"day": [pd.Timestamp(d) for d in sorted(days)],
         "floor": [days[d].get("floor") for d in sorted(days)],
         "eth_usd": [days[d].get("eth_usd") for d in sorted(days)]}
    )
    market["day"] = market["day"].astype("datetime64[ns]")
    market[["floor", "eth_usd"]] = market[["floor", "eth_usd"]].astype(float)
    return MarketData(item_frame, sales, market, excluded=excluded, refused_unplaced=dict(sorted(unplaced.items())))


def _placeable(ts: datetime | None) -> bool:
    """Whether a refused row's time can be placed in a report's window: one it names, that pandas
    can hold (models.features.excluded_frame leaves a row dated in the year 9999 out)."""
    import pandas as pd

    return ts is not None and pd.Timestamp.min.tz_localize(UTC) < pd.Timestamp(ts) < pd.Timestamp.max.tz_localize(UTC)
