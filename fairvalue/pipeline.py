"""The jobs of the service as plain functions: seed, ingest, train, nowcast.

The CLI and the Celery tasks are thin adapters around these; the science they call lives
in models/, the persistence in storage/.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from fairvalue import kinds
from fairvalue.answers import iso
from fairvalue.settings import Settings, get_settings
from models import estimator
from models.daily import TooFewPrices
from models.diagnostics import LEARNING_FRACTIONS, diagnostics, item_segments, learning_curve
from models.drift import DriftReport, drift_report
from models.features import MarketData, build_features, valuation_queries
from models.metrics import valuation_metrics
from models.validation import ValidatedBatch, item_key_of, sale_day_of, validate_batch
from storage import ingest as ingest_store
from storage import retention, snapshots, webhook_calls
from storage.artifacts import ArtifactError, ArtifactStore, get_store
from storage.bundled import read_market_days, read_punks, read_sales_file
from storage.db import consistent_reads, database_now, session_scope
from storage.market import current_snapshot, load_market_data, stored_after
from storage.registry import CHAMPION, get_alias, load_model, promote, register_version
from storage.retention import RetentionReport
from storage.snapshots import SignalRules, publish, snapshot_csv, snapshot_csv_gz, write_snapshot
from storage.tables import Collection, ModelVersion, NowcastSnapshot, Sale, utcnow
from storage.webhook_batch import CallOutcome, WebhookCall

Progress = Callable[[int], None]


def ensure_collection_of(session: Session, settings: Settings) -> Collection:
    """The settings' collection row, made when missing (storage.ingest.ensure_collection). A read
    that must not make it looks it up instead (is_loaded, train; fairvalue.reads.collection_row)."""
    return ingest_store.ensure_collection(session, settings.collection)


def _stored_collection(session: Session, settings: Settings) -> Collection | None:
    """The settings' collection when it is stored: looked up, never made."""
    return session.exec(select(Collection).where(Collection.slug == settings.collection)).first()


def is_loaded(settings: Settings) -> bool:
    """The collection exists and has items (a deployment without cards loaded skips their tasks)."""
    from storage.tables import Item

    with session_scope() as session:
        coll = _stored_collection(session, settings)
        return coll is not None and session.exec(
            select(Item.item_key).where(Item.collection_id == coll.id).limit(1)).first() is not None


def check_stored(settings: Settings) -> None:
    """NotFound unless the settings' collection is stored: looked up, not made, so a mistyped slug
    leaves nothing behind."""
    from fairvalue.reads import collection_row

    with session_scope() as session:
        collection_row(session, settings.collection)


def has_champion(settings: Settings) -> bool:
    """The collection exists and has a champion: a nowcast has a model to value with. Looked up,
    not created."""
    with session_scope() as session:
        coll = _stored_collection(session, settings)
        return coll is not None and get_alias(session, coll, CHAMPION) is not None


@functools.lru_cache(maxsize=1)
def _loaded_commit() -> str:
    """The checkout's commit when this process first asked: a worker asks as it starts
    (tasks/lifecycle.py), so a commit made while it runs is not recorded as the code it loaded."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> str:
    """Recorded on each model version: FAIRVALUE_CODE_VERSION, else the commit this process loaded."""
    return get_settings().code_version or _loaded_commit()


# --- ingest ---------------------------------------------------------------------------

@dataclass
class SeedReport:
    new_items: int
    new_market_days: int
    sales: ingest_store.IngestReport


# How each kind of collection gets its data: what a command that cannot work yet tells the operator.
LOAD_DAILY_PRICES = "load its cards with `fairvalue cards load` and their prices with `fairvalue ingest prices`"
SEED_FILES = ("punks.csv", "floor.csv", "eth_usd.csv", "sales.csv")  # seed's files, in data/<slug>/


class CannotSeed(LookupError):
    """The collection has no bundled market of sales to seed (check_seedable says why)."""


def check_seedable(settings: Settings) -> None:
    """CannotSeed unless the collection takes sales and its folder in the data folder holds the
    bundled market: `seed` of a daily-priced collection (cards, loaded otherwise) or of a slug with
    no files read a sales.csv that is not there and failed with a traceback."""
    slug = settings.collection
    with session_scope() as session:  # looked up, not created
        kind = ingest_store.kind_of_slug(session, slug)
    if kind == ingest_store.DAILY_PRICES:
        raise CannotSeed(f"collection {slug} is daily-priced: {LOAD_DAILY_PRICES}")
    folder = settings.data_dir / slug
    missing = [name for name in SEED_FILES if not (folder / name).is_file()]
    if missing:
        raise CannotSeed(f"unknown collection {slug!r}: no bundled market to seed "
                         f"({folder} has no {', '.join(missing)})")


def seed(settings: Settings | None = None, progress: Progress | None = None) -> SeedReport:
    """Load the bundled market (items, floor, ETH/USD, sales). A second run adds nothing.
    CannotSeed, before anything is stored, when the collection has none (check_seedable)."""
    settings = settings or get_settings()
    check_seedable(settings)
    data_dir = settings.data_dir / settings.collection
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        new_items = ingest_store.add_items(session, coll, read_punks(data_dir / "punks.csv"))
        new_days = ingest_store.put_market_days(
            session, coll, read_market_days(data_dir / "floor.csv", data_dir / "eth_usd.csv")
        )
    report = ingest_sales_rows(read_sales_file(data_dir / "sales.csv"), "seed:sales.csv", settings, progress)
    return SeedReport(new_items, new_days, report)


def ingest_sales_rows(
    rows: Iterable[Mapping[str, Any]],
    origin: str,
    settings: Settings | None = None,
    progress: Progress | None = None,
    batch_size: int = 5000,
) -> ingest_store.IngestReport:
    """Validate and store sales in batches, each batch its own transaction."""
    settings = settings or get_settings()
    if isinstance(rows, list) and len(rows) <= batch_size:
        with session_scope() as session:
            report = ingest_sales_call(session, rows, origin, settings)
        if progress:
            progress(len(rows))
        return report
    total = ingest_store.IngestReport()
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        known = ingest_store.known_item_keys(session, coll)
        floors = ingest_store.floor_lookup(session, coll)
    first_day = coll.first_day

    def store(validated: ValidatedBatch, size: int) -> None:
        with session_scope() as session:
            total.add(ingest_store.store_validated(session, coll, validated, origin))
        if progress:
            progress(size)

    # Validation (Python) of one batch overlaps the database's work on the one before; the
    # gain is the server's share of the write (bench/ingest.py), the COPY encoding holds the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as writer:
        stored: Future | None = None
        for batch in _batches(rows, batch_size):
            validated = validate_batch(batch, known, floors, settings.min_floor_fraction, first_sale_day=first_day)
            for sale in validated.clean:  # hashed here: the writer, which stores them by it, is the busier thread
                _ = sale.content_hash
            if stored is not None:
                stored.result()  # one batch in flight: memory stays bounded, errors surface here
            stored = writer.submit(store, validated, len(batch))
        if stored is not None:
            stored.result()
    return total


def _batches(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    batch: list[Mapping[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest_sales_call(
    session: Session, rows: list[Mapping[str, Any]], origin: str, settings: Settings
) -> ingest_store.IngestReport:
    """A small batch (ingest_sales_rows of a short list) in the caller's transaction, reading only
    the items it names and the floors of the days it names, not every key and day of the
    collection. Webhook calls go through ingest_webhook_calls."""
    mappings = [row for row in rows if isinstance(row, Mapping)]
    coll = ensure_collection_of(session, settings)
    known = ingest_store.known_item_keys(session, coll, {item_key_of(row) for row in mappings})
    floors = ingest_store.floor_lookup(session, coll, {d for d in map(sale_day_of, mappings) if d is not None})
    return ingest_store.ingest_sales(session, coll, rows, origin, settings.min_floor_fraction, known, floors)


def ingest_webhook_calls(calls: Sequence[WebhookCall], settings: Settings | None = None) -> list[CallOutcome]:
    """Webhook calls of sales in one transaction (group commit: api/webhooks.py); each gets its own
    outcome. CannotTakeSales, before anything is stored, unless the collection takes sales, as
    for listings (ingest_listings_call): a daily-priced one stored them where nothing reads them."""
    settings = settings or get_settings()
    check_takes_sales(settings.collection)
    with session_scope() as session:
        return webhook_calls.ingest_calls(session, settings.collection, calls, settings.min_floor_fraction)


def ingest_listings_call(call: WebhookCall, settings: Settings | None = None) -> CallOutcome:
    """A signed webhook call of listing events, in one transaction (storage/webhook_calls.py).
    CannotTakeSales, before anything is stored, unless the collection is one whose signals read
    listings (items that sell one by one; not a daily-priced one)."""
    settings = settings or get_settings()
    check_takes_sales(settings.collection)
    with session_scope() as session:
        return webhook_calls.ingest_listing_call(session, settings.collection, call)


def ingest_file(path: Path, settings: Settings | None = None, progress: Progress | None = None):
    """A sales file (a backfill); `fairvalue ingest sales` runs check_takes_sales first."""
    return ingest_sales_rows(read_sales_file(path), f"file:{path.name}", settings, progress)


def ingest_listings_file(path: Path, settings: Settings | None = None, progress: Progress | None = None,
                         batch_size: int = 5000) -> ingest_store.IngestReport:
    """A file of listing events (a backfill of the order book), each batch its own transaction, as
    a webhook call is (storage/listings.py); `fairvalue ingest listings` runs check_takes_sales
    first. Stored once per event id, so the same file again stores nothing."""
    from storage.bundled import read_listings_file
    from storage.listings import ingest_listings

    settings = settings or get_settings()
    total = ingest_store.IngestReport()
    for batch in _batches(read_listings_file(path), batch_size):
        with session_scope() as session:
            total.add(ingest_listings(session, ensure_collection_of(session, settings), batch, datetime.now(UTC),
                                      origin=f"file:{path.name}"))
        if progress:
            progress(len(batch))
    return total


class CannotTakeSales(LookupError):
    """The collection cannot take a sales file (check_takes_sales says why)."""


def check_takes_sales(slug: str) -> None:
    """CannotTakeSales unless `slug` names a stored collection of sales with items: a mistyped slug
    must leave nothing behind, a daily-priced one (stored or not yet) takes prices, and a
    collection without items would keep every row as rejected (unknown item) instead of saying
    that `fairvalue seed` has not run."""
    from fairvalue.errors import NotFound
    from fairvalue.reads import collection_row
    from storage.tables import Item

    with session_scope() as session:
        # By kind first: cards not loaded yet are no collection to `seed` (check_seedable) either.
        if ingest_store.kind_of_slug(session, slug) == ingest_store.DAILY_PRICES:
            raise CannotTakeSales(f"collection {slug} is of kind {ingest_store.DAILY_PRICES}: it takes daily "
                                  "prices (`fairvalue ingest prices`), not sales, once its cards are loaded "
                                  "(`fairvalue cards load`)")
        try:
            coll = collection_row(session, slug)
        except NotFound as exc:
            raise CannotTakeSales(f"{exc}: run `fairvalue seed` first") from None
        if session.exec(select(Item.item_key).where(Item.collection_id == coll.id).limit(1)).first() is None:
            raise CannotTakeSales(f"collection {coll.slug} has no items: run `fairvalue seed` first")


def sales_since_published(settings: Settings | None = None) -> int:
    """Sales stored after the published snapshot read its data: what a nowcast would add."""
    from storage.snapshots import published_snapshot

    settings = settings or get_settings()
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        snap = published_snapshot(session, coll)
        query = select(func.count()).select_from(Sale).where(Sale.collection_id == coll.id)
        if snap is not None and snap.data_snapshot:  # exact: what its read did not see (storage/market.py)
            query = query.where(stored_after(snap.data_snapshot))
        elif snap is not None:  # a snapshot from before migration 0009: its row's creation
            query = query.where(Sale.ingested_at > (snap.data_read_at or snap.created_at))
        return session.exec(query).one()


def _published(settings: Settings):
    """The published snapshot when its nowcast's read time is known, else None."""
    from storage.snapshots import published_snapshot

    with session_scope() as session:
        snap = published_snapshot(session, ensure_collection_of(session, settings))
    return None if snap is None or snap.data_read_at is None else snap


def seconds_since_published_read(settings: Settings) -> float | None:
    """How long ago, by the database's clock, the published snapshot's nowcast read the market;
    None when nothing is published."""
    snap = _published(settings)
    return None if snap is None else (database_now() - snap.data_read_at).total_seconds()


def published_read_since(settings: Settings, moment: datetime) -> int | None:
    """The published snapshot's id when its nowcast read the market at or after `moment` (so it
    holds everything stored, and the champion named, before then), else None."""
    snap = _published(settings)
    return snap.id if snap is not None and snap.data_read_at >= moment else None  # UTCDateTime: aware times


# --- training ---------------------------------------------------------------------------

@dataclass
class TrainResult:
    version: int
    model_version_id: int
    metrics: dict[str, Any]
    became_champion: bool
    diagnostics_uri: str | None


class NothingToTrain(ValueError):
    """The collection holds no sales (or prices) before the cutoff: a setup step is missing."""


# What the data refuses to train on: no attempt on the same data can succeed, so the CLI prints it
# as one line (exit 1) and a training request fails at once instead of retrying (fairvalue.lifecycle).
TRAINING_REFUSALS: tuple[type[Exception], ...] = (NothingToTrain, estimator.TooFewSales, TooFewPrices)


def train(settings: Settings | None = None, cutoff: datetime | None = None) -> TrainResult:
    """Train on every sale before `cutoff` (default: all), score it on a forward holdout,
    register the version with its diagnostics. The first version becomes champion."""
    settings = settings or get_settings()
    params = estimator.TrainParams(**settings.train_params())
    with session_scope() as session:
        # Looked up, not made: a collection not made yet has nothing to train on, and a failed train
        # made it (an empty `cards` that `status` then showed as loaded, with 0 items).
        coll = _stored_collection(session, settings)
        daily = ingest_store.kind_of_slug(session, settings.collection) == ingest_store.DAILY_PRICES
        if coll is None:
            raise NothingToTrain(f"no prices to train on: {LOAD_DAILY_PRICES}" if daily else
                                 "no sales to train on: run `fairvalue seed` or ingest sales first")
        data = None if daily else load_market_data(session, coll)
    if daily:  # after the block: its own transaction must not wait on this one's
        return train_daily(settings, cutoff)
    if data.sales.empty:
        raise NothingToTrain("no sales to train on: run `fairvalue seed` or ingest sales first")
    data = _before_cutoff(data, cutoff, lambda d: d.sales["ts"], "sale")
    end = data.sales["ts"].max()
    holdout_start = end - pd.Timedelta(days=settings.holdout_days)
    store = get_store(settings)
    store.check()  # a missing bucket said now, not after the fits
    with estimator.training_threads(settings.train_threads):
        metrics, diagnostics = holdout_evaluation(data, holdout_start, params, settings.learning_curve_splits)
        model = estimator.fit(data, params)
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        version = register_version(
            session, store, coll, model, metrics,
            data_start=data.sales["ts"].min().tz_localize("UTC").to_pydatetime(),
            data_end=end.tz_localize("UTC").to_pydatetime(),
            n_train=len(data.sales),
            code_version=code_version(),
        )
        diagnostics_uri = store_diagnostics(session, store, coll, version, diagnostics)
        first = get_alias(session, coll, CHAMPION) is None
        if first:
            promote(session, coll, version)
        return TrainResult(version.version, version.id, version.metrics, first, diagnostics_uri)


def store_diagnostics(session: Session, store, coll: Collection, version: ModelVersion, diagnostics) -> str | None:
    """Store a version's diagnostics page as an artifact and name it in the version's metrics (the
    caller commits); None when there are none (too few sales on one side of the holdout)."""
    if diagnostics is None:
        return None
    diagnostics.meta = {**diagnostics.meta, "model_version": version.version}
    stored = store.put(f"diagnostics/{coll.slug}/v{version.version}.html", diagnostics.to_html().encode())
    version.metrics = {**version.metrics, "diagnostics": {"uri": stored.uri, "sha256": stored.sha256}}
    session.add(version)
    return stored.uri


def _before_cutoff(data, cutoff: datetime | None, times_of: Callable[[Any], pd.Series], noun: str):
    """The data known before `cutoff` (all of it without one), or NothingToTrain naming the cutoff
    when it leaves out every stored `noun` (a sale, a card's price), which the data holds."""
    if cutoff is None:
        return data
    first = times_of(data).min()
    known = data.before(pd.Timestamp(cutoff).tz_convert("UTC").tz_localize(None))
    if times_of(known).empty:
        raise NothingToTrain(f"no {noun}s before the cutoff {iso(cutoff)}: the first stored {noun} is of "
                             f"{first:%Y-%m-%d}")
    return known


def train_daily(settings: Settings, cutoff: datetime | None = None) -> TrainResult:
    """train() for a daily-priced collection: holdout score, fit on everything before `cutoff`,
    register; the first version becomes champion."""
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        data = kinds.DAILY.load(session, coll)
    if data.prices.empty:
        raise NothingToTrain(f"no prices to train on: load prices into {coll.slug} first")
    data = _before_cutoff(data, cutoff, lambda d: d.prices["day"], "price")
    metrics = kinds.holdout_daily(data, settings.holdout_days)
    model = kinds.fit_daily(data)
    start, end, n = kinds.DAILY.span(data)
    with session_scope() as session:
        coll = ensure_collection_of(session, settings)
        version = register_version(session, get_store(settings), coll, model, metrics, data_start=start,
                                   data_end=end, n_train=n, code_version=code_version())
        first = get_alias(session, coll, CHAMPION) is None
        if first:
            promote(session, coll, version)
        return TrainResult(version.version, version.id, version.metrics, first, None)


def holdout_evaluation(data: MarketData, holdout_start: pd.Timestamp, params: estimator.TrainParams,
                       curve_splits: int = 1, holdout_model: estimator.FairValueModel | None = None):
    """Forward score: fit on sales before `holdout_start`, predict each later sale as of the
    start of its day (as a daily nowcast would), and build the version's diagnostics.
    `holdout_model`: that fit when the caller already made it (the gates' contender), not made again.

    The learning curve repeats that on `curve_splits` forward windows of the holdout's length,
    the holdout and the ones just before it, each scored by models trained only on sales before
    its start, at each of LEARNING_FRACTIONS of those sales (the most recent): one split alone
    cannot tell a real trend from one month's noise. The holdout's own full fit is one of them.
    With `curve_splits` 0 there is no curve: the holdout's fit alone (metrics without its keys)."""
    window = data.sales["ts"].max() - holdout_start
    starts = [holdout_start - k * window for k in range(max(curve_splits, 1) - 1, -1, -1)]  # oldest first
    newest = len(starts) - 1
    later = data.sales[data.sales["ts"] >= holdout_start].reset_index(drop=True)
    if len(data.before(holdout_start).sales) < 50 or later.empty:
        return {"holdout": "skipped: not enough sales on one side of the holdout start"}, None
    holdout: dict[str, pd.DataFrame] = {}

    def fit_predict(split: int, fraction: float) -> dict[str, Any]:
        # Train on the most recent `fraction` of the sales before the split; score its window only.
        start = starts[split]
        past = data.before(start)
        scored = (data.sales["ts"] >= start) & (data.sales["ts"] < starts[split + 1] if split < newest else True)
        window_sales = data.sales[scored].reset_index(drop=True)
        if len(past.sales) < 50 or window_sales.empty:
            raise ValueError(f"split from {start:%Y-%m-%d}: {len(past.sales)} sales before it, "
                             f"{len(window_sales)} in it")
        # The fraction's rows only; their features read the whole market before each sale, as a
        # nowcast's do (a market cut at the fraction's first sale gave them no last sale, no
        # comparables and no hedonic fit before it: a train/serve gap, not fewer rows).
        rows_from = past.sales["ts"].quantile(1 - fraction) if fraction < 1 else None
        n_train = len(past.sales) if rows_from is None else int((past.sales["ts"] >= rows_from).sum())
        queries = pd.DataFrame({"item_key": window_sales["item_key"], "ts": window_sales["ts"].dt.normalize()})
        queries["ts"] = queries["ts"].where(queries["ts"] >= start, start)
        reused = holdout_model is not None and split == newest and fraction == 1.0
        pred = (holdout_model if reused else estimator.fit(past, params, rows_from)).predict(data, queries)
        if split == newest and fraction == 1.0:
            holdout["pred"] = pred
        return {"n_train": n_train, "predicted": pred["fair_value"].to_numpy(),
                "actual": window_sales["price"].to_numpy(), "cluster": queries["ts"].to_numpy()}

    if curve_splits:
        curve = learning_curve(fit_predict, curve_splits, LEARNING_FRACTIONS, skip_errors=(ValueError,))
    else:
        fit_predict(0, 1.0)  # the holdout's own fit and scores (the guard above leaves it enough sales)
        curve = None
    pred = holdout.get("pred")
    if pred is None:
        return {"holdout": "skipped: the holdout model could not be trained"}, None
    result = valuation_metrics(pred["fair_value"].to_numpy(), later["price"].to_numpy(),
                               pred["p10"].to_numpy(), pred["p90"].to_numpy())
    floor = valuation_metrics(pred["floor"].to_numpy(), later["price"].to_numpy())
    segments = item_segments(data.items, later["item_key"], pred["fair_value"])
    start = iso(holdout_start.to_pydatetime())  # UTC with its Z, as every time the API answers
    split_starts = [iso(s.to_pydatetime(warn=False)) for s in starts] if curve else []
    diag = diagnostics(pred["fair_value"].to_numpy(), later["price"].to_numpy(), segments, curve,
                       p10=pred["p10"].to_numpy(), p90=pred["p90"].to_numpy(),
                       meta={"holdout_start": start, "n_holdout": len(later), "curve_split_starts": split_starts})
    metrics = {"holdout_start": start, "model": result, "floor_baseline": floor}
    if curve:
        metrics.update(learning_curve=curve, learning_curve_split_starts=split_starts)
    return metrics, diag


class NoChampion(LookupError):
    """The collection has no champion model yet (nothing to value or measure with)."""


class FutureAsOf(ValueError):
    """A nowcast asked for a moment still to come: its snapshot would outrank every nowcast
    until then (snapshots publish in the order of their as_of), freezing the published values."""


class NothingToValue(ValueError):
    """The champion gave items no fair value at the nowcast's moment, or valued none: a moment before
    any market input (no floor, no prices known yet). A snapshot must value every item it lists, and
    list at least one."""


# What a nowcast refuses before it values anything: an as_of to come, a collection with no
# champion, a moment before any market input.
NOWCAST_REFUSALS = (FutureAsOf, NoChampion, NothingToValue)

# How far ahead of the database's clock an as_of may be: clocks of different machines differ a little.
AS_OF_CLOCK_SLACK = pd.Timedelta(minutes=5)


class NotMeasured(ValueError):
    """What was asked is not measured for this kind of collection yet."""


class ChampionAndMarket(NamedTuple):
    collection: Collection
    champion: ModelVersion
    model: Any
    data: Any
    read_under: str | None  # the pg_snapshot the market was read under (PostgreSQL), else None


def champion_and_market(settings: Settings, store, stored_by: datetime | None = None,
                        listings_at: datetime | None = None) -> ChampionAndMarket:
    """The collection, its champion (verified artifact loaded) and the market it may know (with
    `listings_at`, the listings that decide the asks open then), read in one transaction: on
    PostgreSQL under one snapshot (`read_under`, the sales exactly as that read saw them),
    elsewhere the sales stored by `stored_by`. The collection is looked up, not created:
    NotFound for a slug that names none, so a mistyped one leaves nothing behind."""
    from fairvalue.reads import collection_row

    with session_scope(consistent_reads()) as session:
        read_under = current_snapshot(session)  # first: the snapshot every read below is under
        coll = collection_row(session, settings.collection)
        champion = get_alias(session, coll, CHAMPION)
        if champion is None:
            raise NoChampion(f"collection {coll.slug} has no champion model: run `fairvalue train --collection "
                             f"{coll.slug}`")
        data = kinds.kind_of(coll).load(session, coll, stored_by=None if read_under else stored_by,
                                        listings_at=listings_at)
    return ChampionAndMarket(coll, champion, load_model(store, champion), data, read_under)


# What the drift report's prediction is: the model's predicted log premium over the floor.
PREDICTION_DRIFT_LABEL = "predicted log premium over the floor, log(fair value / floor)"


def drift(settings: Settings | None = None, recent_days: int = 30) -> tuple[DriftReport, str | None]:
    """Drift between the last `recent_days` of the champion's training window and the last
    `recent_days` of sales (ending at the latest sale): per-feature and prediction drift, archived as HTML.

    The reference is the *end* of the training window, not all of it: market-state features
    (floor change, premium, ETH/USD) of one month always differ from those of four years, so a
    whole-window reference reports drift for every champion, however fresh. Against the month
    the champion saw last, a fresh champion shows none and a stale one shows how far the market
    has moved since."""
    from fairvalue.reads import collection_row

    settings = settings or get_settings()
    with session_scope() as session:  # the kind first: a cards collection without a model is told why, not to train one
        if kinds.is_daily(coll := collection_row(session, settings.collection)):
            raise NotMeasured(f"drift is not measured for daily-priced collections ({coll.slug}) yet")
    store = get_store(settings)
    coll, champion, model, data, _ = champion_and_market(settings, store)
    ts = data.sales["ts"]
    train_start = pd.Timestamp(champion.data_start).tz_convert("UTC").tz_localize(None)
    train_end = pd.Timestamp(champion.data_end).tz_convert("UTC").tz_localize(None)
    reference_start = max(train_start, train_end - pd.Timedelta(days=recent_days))
    recent_end = ts.max()
    recent_start = recent_end - pd.Timedelta(days=recent_days)
    windows = {"reference": (ts > reference_start) & (ts <= train_end), "current": ts > recent_start}
    frames, preds = {}, {}
    for name, mask in windows.items():
        sales = data.sales[mask]
        # Valued as the training rows were, so the reference window is the model's own inputs.
        feats = build_features(data, model.vocab, valuation_queries(sales))
        frames[name] = feats[model.columns]
        preds[name] = np.log(model.predict_features(feats)["fair_value"] / feats["floor"]).to_numpy()
    report = drift_report(
        frames["reference"], frames["current"], reference_pred=preds["reference"], current_pred=preds["current"],
        pred_is_log=True, prediction_label=PREDICTION_DRIFT_LABEL,
        meta={"collection": coll.slug, "champion": champion.version,
              "reference": f"{reference_start:%Y-%m-%d} .. {train_end:%Y-%m-%d}",
              "current": f"{recent_start:%Y-%m-%d} .. {recent_end:%Y-%m-%d}"},
    )
    try:
        uri = store.put(f"reports/{coll.slug}/drift-v{champion.version}-{recent_end:%Y%m%d}.html",
                        report.to_html().encode()).uri
    except ArtifactError:
        uri = None  # the numbers are still returned; the archive is a convenience
    return report, uri


# --- nowcast ----------------------------------------------------------------------------

@dataclass
class NowcastResult:
    snapshot_id: int
    published: bool
    n_items: int
    model_version: int
    archive_uri: str | None
    archive_error: str | None
    shadows: dict[str, int]
    shadow_errors: dict[str, str] | None = None
    # Wall seconds of each stage (load, value, write, publish, archive, shadows), recorded
    # with the task run and printed by bench/nowcast.py.
    seconds: dict[str, float] = field(default_factory=dict)


def nowcast(settings: Settings | None = None, as_of: datetime | None = None) -> NowcastResult:
    """Value every item at `as_of` (default now) with the champion; write, publish, archive.

    "Now" is the database's clock, the one every worker shares: snapshots publish in the order
    of their as_of, so a worker whose own clock ran ahead would outrank everyone else's."""
    settings = settings or get_settings()
    now = database_now()
    as_of = as_of or now
    if as_of > now + AS_OF_CLOCK_SLACK:
        raise FutureAsOf(f"as_of {as_of.isoformat()} is in the future by the database's clock; a snapshot of "
                         "it would outrank every nowcast until then")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage], clock = round(now - clock, 4), now

    store = get_store(settings)
    # The snapshot holds the sales its read saw, and only those: a 1M-item nowcast reads for
    # seconds, and a sale stored meanwhile must still count as new (sales_since_published) and stay
    # out of the snapshot's explanation, which reads the same sales. On PostgreSQL the read's own
    # pg_snapshot says which (exact); elsewhere, those stored by data_read_at. Stamped before the
    # read, by the clock the request that asked for it used (tasks.app.request_nowcast).
    data_read_at = now
    coll, champion, model, data, read_under = champion_and_market(settings, store, stored_by=data_read_at,
                                                                  listings_at=as_of)
    lap("load")
    t = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None)
    kind = kinds.kind_of(coll)
    moment = kind.valued_at(data, t, settings)  # t, unless the market has gone silent
    values = kind.value_all(model, data, moment, settings, asked_at=t)
    unvalued = int(values["fair_value"].isna().sum())
    if values.empty:  # a daily-priced kind lists only the items it could value: none before their prices
        raise NothingToValue(f"no item has a fair value at {moment.isoformat()}Z: the market holds too few prices "
                             "or sales before that moment; an empty snapshot would hide the one published")
    if unvalued:
        raise NothingToValue(f"{unvalued} of {len(values)} items have no fair value at {moment.isoformat()}Z: "
                             "the market holds no input (floor, sale) before that moment")
    cutoff = kind.data_cutoff(data, t)
    valued_at = moment.tz_localize("UTC").to_pydatetime()
    lap("value")
    rows_csv = snapshot_csv(values)  # one text for the database rows and the archive
    with session_scope() as session:
        snapshot = write_snapshot(session, coll, champion.id, as_of, cutoff, values, rows_csv, valued_at,
                                  data_read_at, read_under, SignalRules.of(settings))
    lap("write")
    with session_scope() as session:
        snapshot = session.get(NowcastSnapshot, snapshot.id)
        moved = publish(session, coll, snapshot)
    lap("publish")
    # The snapshot is published: its archive gets the short budget, the hourly retry the patient one.
    archive_uri, archive_error = archive_snapshot(settings, snapshot.id, values, rows_csv,
                                                  store=get_store(settings, short_budget=True))
    lap("archive")
    shadows, shadow_errors = {}, {}
    if moved:  # a superseded run's shadows would pair the watched models with values never served
        shadows, shadow_errors = shadow_nowcasts(settings, coll, data, moment, as_of, cutoff, valued_at,
                                                 data_read_at, read_under, snapshot.published_at)
    lap("shadows")
    return NowcastResult(snapshot.id, moved, len(values), champion.version, archive_uri, archive_error, shadows,
                         shadow_errors or None, seconds)


def shadow_nowcasts(settings: Settings, coll: Collection, data, moment, as_of, cutoff, valued_at, data_read_at,
                    read_under, published_at: datetime) -> tuple[dict[str, int], dict[str, str]]:
    """Value the collection with the models watched beside the champion: the previous
    champion during a promotion's probation (the monitor compares against it) and a contender
    in shadow. Their snapshots are kept with status `shadow` and never published. A shadow
    whose artifact cannot be read is skipped with the reason: it must not fail the nowcast.

    Each carries the champion snapshot's `published_at`: a sale is scored against the last
    values published before it, and the monitor pairs the champion's with a shadow's by sale,
    so a shadow stamped later (after the archive, after the other shadows) would leave the sales
    between the two stamps scored against the fresh champion and an older shadow."""
    from storage.registry import CONTENDER, PREVIOUS_CHAMPION, alias_since

    # The short budget: a shadow is skipped with its reason when the store fails, so a hung store
    # must not hold the nowcast (already published) for the patient client's minutes.
    store = get_store(settings, short_budget=True)
    written: dict[str, int] = {}
    errors: dict[str, str] = {}
    with session_scope() as session:
        watched = []
        since = alias_since(session, coll, PREVIOUS_CHAMPION)
        if since is not None and utcnow() - since <= pd.Timedelta(days=settings.probation_days):
            watched.append((PREVIOUS_CHAMPION, get_alias(session, coll, PREVIOUS_CHAMPION)))
        watched.append((CONTENDER, get_alias(session, coll, CONTENDER)))
    asked_at = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None)
    for alias, version in watched:
        if version is None:
            continue
        try:
            model = load_model(store, version)
        except ArtifactError as exc:
            errors[alias] = str(exc)
            continue
        values = kinds.kind_of(coll).value_all(model, data, moment, settings, asked_at=asked_at)
        with session_scope() as session:
            snapshot = write_snapshot(session, coll, version.id, as_of, cutoff, values, valued_at=valued_at,
                                      data_read_at=data_read_at, data_snapshot=read_under,
                                      signal_rules=SignalRules.of(settings))
            snapshot.status, snapshot.published_at = snapshots.SHADOW, published_at
            session.add(snapshot)
        written[alias] = snapshot.id
    return written, errors


def archive_snapshot(
    settings: Settings, snapshot_id: int, values: pd.DataFrame, rows_csv: str | None = None,
    store: ArtifactStore | None = None,
) -> tuple[str | None, str | None]:
    """Archive to the store after publishing: a store outage must not stop valuations.
    The error is returned (and recorded) so the archive can be retried."""
    try:
        stored = (store or get_store(settings)).put(
            f"snapshots/{settings.collection}/{snapshot_id}.csv.gz", snapshot_csv_gz(values, rows_csv)
        )
    except ArtifactError as exc:
        return None, str(exc)
    with session_scope() as session:
        snap = session.get(NowcastSnapshot, snapshot_id)
        snap.archive_uri, snap.archive_sha256 = stored.uri, stored.sha256
        session.add(snap)
    return stored.uri, None


@dataclass
class ArchiveReport:
    archived: dict[int, str]
    failed: dict[int, str]
    pending: int


def archive_pending(settings: Settings | None = None, limit: int = 20, short_budget: bool = False) -> ArchiveReport:
    """Retry the archives a store outage left out: published snapshots with no archive, newest
    first, rebuilt from their stored rows. Safe to run at any time, from any worker.
    `short_budget`: the store's short one (get_store), for a caller that must not wait on it."""
    from storage.snapshots import snapshot_values, unarchived_snapshots

    settings = settings or get_settings()
    with session_scope() as session:
        ids = unarchived_snapshots(session, ensure_collection_of(session, settings))
    report = ArchiveReport({}, {}, len(ids))
    store = get_store(settings, short_budget=short_budget) if ids else None
    for snapshot_id in ids[:limit]:
        with session_scope() as session:
            values = snapshot_values(session, snapshot_id)
        uri, error = archive_snapshot(settings, snapshot_id, values, store=store)
        if error:
            report.failed[snapshot_id] = error
            break  # the store is still down: the next run retries the rest
        report.archived[snapshot_id] = uri
    report.pending = len(ids) - len(report.archived)
    return report


def apply_retention(settings: Settings | None = None) -> RetentionReport:
    """Thin the snapshots and listing events older than FAIRVALUE_RETENTION_DAYS, and prune the
    webhook deliveries, task runs and dropped listing ids older than FAIRVALUE_AUDIT_RETENTION_DAYS
    (storage/retention.py); the hourly archive task runs it after archiving."""
    settings = settings or get_settings()
    now = database_now()
    with session_scope() as session:
        audit = retention.AuditWindow(settings.audit_retention_days, settings.webhook_tolerance_seconds)
        return retention.apply_retention(session, ensure_collection_of(session, settings), now, settings.retention_days,
                                         listing_keep_days=settings.listing_retention_days, audit=audit)
