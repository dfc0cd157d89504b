"""The card price collector: a client for a PokemonPriceTracker-v2-shaped API and the daily run
that stores what it answers.

`GET {base}/cards?tcgPlayerId=<id>&includeHistory=true&days=<n>` with `Authorization: Bearer <key>`.
The client retries timeouts, connection errors and 5xx with exponential backoff, and 429 after the
server's Retry-After (seconds or an HTTP date; a wait longer than card_price_max_wait_seconds gives
up instead of stalling the worker). Other 4xx and a body that is not JSON are not retried. The
timeout bounds the whole answer, not each read, so a server that drips bytes (of its headers or
its body) cannot hold a worker;
a body over MAX_BODY_BYTES is refused as it arrives, counted decoded: the client inflates a
gzip or deflate body itself, never past that size (httpx inflated each network chunk whole, and
"gzip, gzip" inflated twice: 826 bytes became 400 MB before any check).

`collect` asks for every active card, turns each answer into rows (models.price_rows), validates
them and upserts the daily observations; a card whose answer is unusable leaves one rejected row
(reason and the body excerpt) and the run goes on with the next card. Running it twice stores
nothing new the second time.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from sqlmodel import Session, select

from fairvalue.settings import Settings, get_settings
from models.price_rows import JumpRule, PriceReason, ValidatedPrices, refuse_implausible, rows_from_api, validate_prices
from models.validation import Rejection
from storage.artifacts import ArtifactStore
from storage.db import session_scope
from storage.ingest import DAILY_PRICES, kind_of_slug, store_rejections
from storage.prices import PriceReport, card_keys, store_validated, stored_prices_before
from storage.tables import Collection

# The encodings the client asks for and inflates itself (Accept-Encoding), and the zlib window
# that reads either wrapper, gzip's or zlib's (deflate).
ACCEPTED_ENCODINGS = ("gzip", "deflate")
ANY_ZLIB_WRAPPER = zlib.MAX_WBITS | 32


def _inflater(content_encoding: str):
    """None for a body sent as it is; a decompressor for one gzip or deflate layer; DecodingError
    for anything else (several layers, or an encoding not asked for): not an answer to our request."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in ACCEPTED_ENCODINGS:
        raise httpx.DecodingError(f"content encoding {content_encoding[:40]!r} was not asked for")
    return zlib.decompressobj(ANY_ZLIB_WRAPPER)


# A year of daily history for one card is a few kB; far past that, the answer is not one we asked for.
MAX_BODY_BYTES = 5_000_000


class AnswerTooSlow(httpx.TimeoutException):
    """The answer did not arrive whole within the client's timeout (each read may have)."""


class _CutOffAtDeadline:
    """Shuts the answer's socket down when the client's timeout has passed. httpx's timeout bounds
    each read, and the body loop's own check begins after the headers, so a server that sent its
    status line and headers a byte every few seconds held the call for as long as it liked. httpcore's
    trace extension names the connection's stream as it connects (or starts TLS); shutting its
    socket down wakes the blocked read, which then fails. A call over the kept-alive connection of
    an earlier one sees no connect: `pooled` is that connection's socket (the client's only one)."""

    CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")

    def __init__(self, seconds: float, pooled: socket.socket | None = None) -> None:
        self.fired = False
        self._socket = pooled
        self._over = False  # the answer is read: a late timer must not break the connection kept for the next
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict) -> None:
        if event in self.CONNECTED and info.get("return_value") is not None:
            with self._lock:
                self._socket = info["return_value"].get_extra_info("socket")
                late = self.fired
            if late:
                self._shut()

    @property
    def used_socket(self) -> socket.socket | None:
        """The socket of the connection this call used: the next call reuses it, unless it is closed."""
        with self._lock:
            return self._socket

    def _fire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.fired = True
        self._shut()

    def _shut(self) -> None:
        with self._lock:
            sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already: the answer is over
                pass

    def __enter__(self) -> _CutOffAtDeadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._over = True
        self._timer.cancel()


class AnswerTooLarge(ValueError):
    """The body passed MAX_BODY_BYTES; reading stopped there."""


class PriceAPIError(RuntimeError):
    def __init__(self, reason: str, detail: str, attempts: int):
        self.reason, self.detail, self.attempts = reason, detail, attempts
        super().__init__(f"{reason}: {detail} (after {attempts} attempt(s))")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class PriceTrackerClient:
    base_url: str
    api_key: str
    timeout: float = 10.0
    max_attempts: int = 4
    backoff: float = 1.0
    max_wait: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    waits: list[float] = field(default_factory=list)  # every pause taken, for the run's record

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PriceTrackerClient:
        return cls(settings.card_price_api_url, settings.card_price_api_key.get_secret_value(),
                   timeout=settings.card_price_timeout_seconds, max_attempts=settings.card_price_max_attempts,
                   backoff=settings.card_price_backoff_seconds, max_wait=settings.card_price_max_wait_seconds,
                   **overrides)

    def __post_init__(self) -> None:
        # One connection, kept alive from card to card (a new one per card cost a connect, and a TLS
        # handshake, each time). One at most, so the socket the deadline's cut-off learnt as it
        # connected is the one a later call reuses (no connect then); a call that broke it connects anew.
        self._socket: socket.socket | None = None
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=httpx.Timeout(self.timeout),
                                  limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                  headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                                           "Accept-Encoding": ", ".join(ACCEPTED_ENCODINGS)})

    def close(self) -> None:
        self._http.close()

    def _pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        # Exponential with a little jitter so that many workers do not retry in step.
        return self.backoff * 2 ** (attempt - 1) * (1 + 0.1 * random.random())  # nosec B311: jitter, not security

    def _get(self, path: str, params: dict[str, str]) -> tuple[httpx.Response, bytes]:
        """The response and its whole body, which must arrive within `timeout` (else AnswerTooSlow)
        and stay under MAX_BODY_BYTES (else AnswerTooLarge, as soon as it passes)."""
        deadline = time.monotonic() + self.timeout
        with _CutOffAtDeadline(self.timeout, self._socket) as cutoff:
            try:
                with self._http.stream("GET", path, params=params, extensions={"trace": cutoff.trace}) as response:
                    inflate = _inflater(response.headers.get("Content-Encoding", ""))
                    body = bytearray()
                    for chunk in response.iter_raw():
                        if inflate is not None:
                            try:  # at most one byte past the limit, whatever the chunk inflates to
                                chunk = inflate.decompress(chunk, MAX_BODY_BYTES + 1 - len(body))
                            except zlib.error as exc:
                                raise httpx.DecodingError(f"{exc}") from None
                        body += chunk
                        if len(body) > MAX_BODY_BYTES:
                            raise AnswerTooLarge(f"body over {MAX_BODY_BYTES} bytes")
                        if time.monotonic() > deadline:
                            raise AnswerTooSlow(f"the answer took over {self.timeout}s")
                    if inflate is not None and not inflate.eof:
                        raise httpx.DecodingError("the compressed body ends before its end")
            except httpx.TransportError as exc:
                if cutoff.fired and not isinstance(exc, AnswerTooSlow):  # the cut-off's doing
                    raise AnswerTooSlow(f"the answer took over {self.timeout}s") from None
                raise
            finally:
                self._socket = cutoff.used_socket
        return response, bytes(body)

    def card(self, tcg_player_id: str, days: int) -> Any:
        """The parsed JSON answer for one card, or PriceAPIError after the retries."""
        params = {"tcgPlayerId": tcg_player_id, "includeHistory": "true", "days": str(days)}
        last = ("unreachable", "no attempt made")
        for attempt in range(1, self.max_attempts + 1):
            try:
                response, body = self._get("/cards", params)
            except httpx.TimeoutException as exc:
                last = ("timeout", f"no answer within {self.timeout}s ({type(exc).__name__})")
            except httpx.DecodingError as exc:  # e.g. a body that says gzip and is not: the answer is broken
                raise PriceAPIError(PriceReason.MALFORMED_RESPONSE, f"body does not decode: {exc}", attempt) from None
            except AnswerTooLarge as exc:
                raise PriceAPIError(PriceReason.MALFORMED_RESPONSE, str(exc), attempt) from None
            except httpx.TransportError as exc:
                last = ("unreachable", f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code == 429:
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    wait = self._backoff(attempt) if wait is None else wait
                    if wait > self.max_wait:
                        raise PriceAPIError("rate_limited", f"Retry-After {wait:.0f}s is over the "
                                                            f"{self.max_wait:.0f}s we wait", attempt)
                    last = ("rate_limited", "429 Too Many Requests")
                    if attempt < self.max_attempts:
                        self._pause(wait)
                    continue
                excerpt = body[:200].decode("utf-8", errors="replace")
                if response.status_code >= 500:
                    last = (f"http_{response.status_code}", excerpt)
                elif response.status_code >= 400:
                    raise PriceAPIError(f"http_{response.status_code}", excerpt, attempt)
                else:
                    try:
                        return json.loads(body)
                    except (ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
                        raise PriceAPIError(PriceReason.MALFORMED_RESPONSE, f"not JSON: {excerpt!r}", attempt) from None
            if attempt < self.max_attempts:
                self._pause(self._backoff(attempt))
        raise PriceAPIError(last[0], last[1], self.max_attempts)


@dataclass
class CollectReport:
    collection: str
    cards: int = 0
    cards_failed: dict[str, str] = field(default_factory=dict)  # card -> reason
    prices: PriceReport = field(default_factory=PriceReport)
    waits: list[float] = field(default_factory=list)
    skipped: str | None = None
    stopped: str | None = None  # why the fetch ended before every card was asked (not kept: the next run asks)

    def as_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "cards": self.cards, "cards_failed": self.cards_failed,
                "prices": self.prices.as_dict(), "retries": len(self.waits),
                "waited_seconds": round(sum(self.waits), 3), "skipped": self.skipped}


def priced_collection(session: Session, slug: str) -> Collection:
    """The daily-priced collection `slug`, looked up, not made; LookupError, before anything is
    asked or stored, when it is of another kind (the punks' items are no cards: collecting them
    called the price API once per punk and stored their "prices" beside the sales) or has no cards."""
    kind = kind_of_slug(session, slug)
    if kind != DAILY_PRICES:  # punks' sales have their own path (`fairvalue ingest sales`)
        raise LookupError(f"collection {slug} is of kind {kind}; daily prices go to a {DAILY_PRICES} collection "
                          "such as cards")
    coll = session.exec(select(Collection).where(Collection.slug == slug)).first()
    if coll is None or not card_keys(session, coll):
        raise LookupError(f"collection {slug} has no cards: run `fairvalue cards load` first")
    return coll


def jump_rule(settings: Settings) -> JumpRule:
    return JumpRule(settings.card_price_max_jump, settings.card_price_jump_last_n, settings.card_price_jump_window_days)


def validate_against_stored(session: Session, coll: Collection, rows: Any, known: set[str], today: date,
                            settings: Settings) -> ValidatedPrices:
    """The rows validated (validate_prices), then each price checked against its card's recent stored
    prices (refuse_implausible): the one way a file's rows and a collected answer's are judged."""
    batch = validate_prices(rows, known, today, coll.first_day)
    rule = jump_rule(settings)
    return refuse_implausible(batch, stored_prices_before(session, coll, batch.clean, rule.window_days), rule)


@dataclass
class FetchedPrices:
    """What the paid API answered for one collection on one day, before anything is stored: the
    answer of each card, or why it has none. Kept as an artifact (save_fetched), so a store that
    fails on the database is retried from it without asking the API again."""

    collection: str
    day: date
    origin: str
    cards: int = 0
    answers: dict[str, Any] = field(default_factory=dict)  # card -> the parsed JSON answer
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # card -> reason, detail, attempts, external_id
    waits: list[float] = field(default_factory=list)
    skipped: str | None = None
    stopped: str | None = None  # why the fetch ended before every card was asked (not kept: the next run asks)
    # Cards whose answer gave no price and were asked again (answered_for_the_day): once a day, not every retry.
    reasked: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"collection": self.collection, "day": self.day.isoformat(), "origin": self.origin,
                           "cards": self.cards, "answers": self.answers, "failures": self.failures,
                           "waits": self.waits, "reasked": self.reasked}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> FetchedPrices:
        raw = json.loads(data)
        return cls(raw["collection"], date.fromisoformat(raw["day"]), raw["origin"], raw["cards"], raw["answers"],
                   raw["failures"], raw["waits"], reasked=raw.get("reasked", []))  # kept before it had one


def fetch_prices(settings: Settings | None = None, client: PriceTrackerClient | None = None, days: int | None = None,
                 today: date | None = None, answered: set[str] | frozenset[str] = frozenset(),
                 stop_on: tuple[type[BaseException], ...] = ()) -> FetchedPrices:
    """Ask the API for every active card's recent prices (the paid part), but those `answered`
    already; store nothing. LookupError first unless the collection is a daily-priced one with
    cards (priced_collection). `stop_on`: what ends the fetch early (a task's soft time limit):
    the answers paid for until then are returned all the same, `stopped` says why, and the cards
    not asked are neither answered nor failed, so the next run asks for them."""
    settings = settings or get_settings()
    with session_scope() as session:
        coll = priced_collection(session, settings.collection)
        cards = {key: attributes for key, attributes in card_keys(session, coll, active_only=True).items()
                 if key not in answered}
    today = today or datetime.now(UTC).date()
    own = client is None
    origin = f"api:{settings.card_price_api_url}"[:200] if own else f"api:{client.base_url}"[:200]
    fetched = FetchedPrices(settings.collection, today, origin)
    if not cards:  # every card answered already: nothing to pay for
        return fetched
    if own and not settings.card_price_api_key.get_secret_value():
        fetched.skipped = "no FAIRVALUE_CARD_PRICE_API_KEY configured"
        return fetched
    client = client or PriceTrackerClient.from_settings(settings)
    try:
        for key, attributes in sorted(cards.items()):
            fetched.cards += 1
            external_id = attributes.get("external_id")
            try:
                fetched.answers[key] = client.card(str(external_id or ""),
                                                   settings.card_price_history_days if days is None else days)
            except PriceAPIError as exc:
                fetched.failures[key] = {"reason": exc.reason, "detail": exc.detail, "attempts": exc.attempts,
                                         "external_id": external_id}
    except stop_on as exc:
        fetched.stopped = f"{type(exc).__name__}: {exc}"
        fetched.cards = len(fetched.answers) + len(fetched.failures)  # the card being asked is not one
    finally:
        fetched.waits = list(client.waits)
        if own:
            client.close()
    return fetched


def with_cards_asked_again(kept: FetchedPrices, again: FetchedPrices) -> FetchedPrices:
    """The day's kept answers completed by a second fetch of the cards they had no usable answer
    for (a failure, an answer with no price, or a card activated since): a card's newest answer,
    its failure only when neither fetch answered it; stopped when the second fetch was. The
    cards whose priceless answer the second fetch asked for again are marked `reasked`."""
    answers = {**kept.answers, **again.answers}
    failures = {key: failure for key, failure in {**kept.failures, **again.failures}.items() if key not in answers}
    asked = (again.answers.keys() | again.failures.keys()) & (kept.answers.keys() - _priced(kept))
    return FetchedPrices(kept.collection, kept.day, kept.origin, len(answers.keys() | failures.keys()), answers,
                         failures, kept.waits + again.waits, stopped=again.stopped,
                         reasked=sorted(set(kept.reasked) | asked))


def answered_for_the_day(fetched: FetchedPrices) -> set[str]:
    """The cards a second run the same day does not ask the API for again: those whose kept answer
    gives a price row, and those whose answer gave none but were asked again once already. An
    answer with no card object or no price may be the API's passing fault, so it is asked again,
    as a failure is, but once a day: a retry after a database error must not pay for it again."""
    return _priced(fetched) | (fetched.answers.keys() & set(fetched.reasked))


def _priced(fetched: FetchedPrices) -> set[str]:
    return {key for key, body in fetched.answers.items() if rows_from_api(key, body, fetched.day)[0]}


def fetched_name(collection: str, day: date) -> str:
    return f"card-prices/{collection}/{day.isoformat()}.json"


def save_fetched(store: ArtifactStore, fetched: FetchedPrices) -> dict[str, str]:
    """Keep the API's answers as an artifact named by collection and day; what load_fetched reads back."""
    kept = store.put(fetched_name(fetched.collection, fetched.day), fetched.to_json())
    return {"uri": kept.uri, "sha256": kept.sha256}


def kept_for_day(store: ArtifactStore, collection: str, day: date) -> dict[str, str] | None:
    """The answers kept for this collection and day (the newest, should there be two), as
    save_fetched gave them, or None: a run delivered again (its worker died, or the broker's
    visibility timeout gave its message back) or run again the same day stores from them rather
    than paying for the same answers twice. Two kept within the store's time resolution (S3's
    second: a run asking again for a few cards right after the first kept its answers) are told
    apart by what they hold: the one with the most answers, the later one completing the earlier.
    ArtifactError when the store cannot be listed or read."""
    newest = [{"uri": kept.uri, "sha256": kept.sha256} for kept in store.newest(fetched_name(collection, day))]
    if len(newest) < 2:
        return newest[0] if newest else None
    return max(newest, key=lambda kept: _completeness(load_fetched(store, kept)))


def _completeness(fetched: FetchedPrices) -> tuple[int, int]:
    return len(fetched.answers), len(fetched.reasked)


def load_fetched(store: ArtifactStore, kept: dict[str, str]) -> FetchedPrices:
    return FetchedPrices.from_json(store.get(kept["uri"], kept["sha256"]))


def store_fetched(settings: Settings, fetched: FetchedPrices) -> CollectReport:
    """Validate and upsert what was fetched, card by card; a card without an answer leaves one
    rejected row (reason and the body excerpt). Idempotent: run again over the same answers (a
    retry after a database error), it stores nothing new and keeps no rejection twice."""
    report = CollectReport(settings.collection, cards=fetched.cards, waits=list(fetched.waits))
    with session_scope() as session:
        coll = priced_collection(session, settings.collection)
        known = set(card_keys(session, coll, active_only=True))
    today = fetched.day
    for key, failure in sorted(fetched.failures.items()):
        report.cards_failed[key] = failure["reason"]
        rejection = Rejection({"card_id": key, "external_id": failure["external_id"], "attempts": failure["attempts"],
                               "day": today.isoformat()}, failure["reason"], failure["detail"])
        with session_scope() as session:
            kept_now = store_rejections(session, coll, [rejection], fetched.origin)
        report.prices.rejected += 1
        report.prices.rejected_kept_before += 1 - kept_now
        report.prices.reasons[failure["reason"]] += 1
    for key, body in sorted(fetched.answers.items()):
        rows, problems = rows_from_api(key, body, today)
        with session_scope() as session:
            batch = validate_against_stored(session, coll, rows, known, today, settings)
            batch.rejected.extend(problems)
            if problems and not batch.clean:
                report.cards_failed[key] = problems[0].reason
            report.prices.add(store_validated(session, coll, batch, fetched.origin))
    return report


def collect(settings: Settings | None = None, client: PriceTrackerClient | None = None, days: int | None = None,
            today: date | None = None) -> CollectReport:
    """Fetch every active card's recent prices and upsert them (see the module docstring):
    fetch_prices then store_fetched, in one go (the task keeps the answers between the two)."""
    settings = settings or get_settings()
    fetched = fetch_prices(settings, client, days, today)
    if fetched.skipped:
        return CollectReport(settings.collection, skipped=fetched.skipped)
    return store_fetched(settings, fetched)


def ingest_price_rows(rows: Any, origin: str, settings: Settings | None = None,
                      today: date | None = None) -> PriceReport:
    """Validate and upsert price rows (date, card id, market price[, volume]) from a backfill;
    rejected rows are kept with their reason. Idempotent."""
    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    with session_scope() as session:
        coll = priced_collection(session, settings.collection)
        known = set(card_keys(session, coll))
        return store_validated(session, coll, validate_against_stored(session, coll, rows, known, today, settings),
                               origin)


def ingest_prices_file(path, settings: Settings | None = None) -> PriceReport:
    from storage.bundled import read_prices_file

    return ingest_price_rows(read_prices_file(path), f"file:{path.name}", settings)
