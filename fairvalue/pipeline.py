"""The jobs of the service as plain functions: seed, ingest, train, nowcast.

The CLI and the Celery tasks are thin adapters around these; the science they call lives
in models/, the persistence in storage/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlmodel import Session, select

from fairvalue.settings import Settings, get_settings
from models import estimator
from models.metrics import valuation_metrics
from models.nowcast import value_all_items
from storage import ingest as ingest_store
from storage.artifacts import ArtifactError, get_store
from storage.bundled import read_market_days, read_punks, read_sales_file
from storage.db import session_scope
from storage.market import load_market_data
from storage.registry import CHAMPION, get_alias, load_model, promote, register_version
from storage.snapshots import publish, snapshot_csv_gz, write_snapshot
from storage.tables import Collection, NowcastSnapshot, Sale, utcnow

Progress = Callable[[int], None]


def collection(session: Session, settings: Settings) -> Collection:
    return ingest_store.ensure_collection(session, settings.collection)


def code_version() -> str:
    if get_settings().code_version:
        return get_settings().code_version
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- ingest ---------------------------------------------------------------------------

@dataclass
class SeedReport:
    new_items: int
    new_market_days: int
    sales: ingest_store.IngestReport


def seed(settings: Settings | None = None, progress: Progress | None = None) -> SeedReport:
    """Load the bundled market (items, floor, ETH/USD, sales). A second run adds nothing."""
    settings = settings or get_settings()
    data_dir = settings.data_dir / settings.collection
    with session_scope() as session:
        coll = collection(session, settings)
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
    total = ingest_store.IngestReport()
    with session_scope() as session:
        coll = collection(session, settings)
        known = ingest_store.known_item_keys(session, coll)
        floors = ingest_store.floor_lookup(session, coll)
    batch: list[Mapping[str, Any]] = []

    def flush() -> None:
        with session_scope() as session:
            total.add(ingest_store.ingest_sales(
                session, coll, batch, origin, settings.min_floor_fraction, known, floors))
        if progress:
            progress(len(batch))
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total


def ingest_file(path: Path, settings: Settings | None = None, progress: Progress | None = None):
    return ingest_sales_rows(read_sales_file(path), f"file:{path.name}", settings, progress)


def sales_since_published(settings: Settings | None = None) -> int:
    """Sales ingested after the published snapshot was built: what a nowcast would add."""
    from storage.snapshots import published_snapshot

    settings = settings or get_settings()
    with session_scope() as session:
        coll = collection(session, settings)
        snap = published_snapshot(session, coll)
        query = select(Sale.id).where(Sale.collection_id == coll.id)
        if snap is not None:
            query = query.where(Sale.ingested_at > snap.created_at)
        return len(session.exec(query.limit(100_000)).all())


# --- training ---------------------------------------------------------------------------

@dataclass
class TrainResult:
    version: int
    model_version_id: int
    metrics: dict[str, Any]
    became_champion: bool


def train(settings: Settings | None = None, cutoff: datetime | None = None) -> TrainResult:
    """Train on every sale before `cutoff` (default: all), score it on a forward holdout,
    register the version. The first version of a collection becomes champion."""
    settings = settings or get_settings()
    params = estimator.TrainParams(max_iter=settings.train_max_iter, random_state=settings.random_seed)
    with session_scope() as session:
        coll = collection(session, settings)
        data = load_market_data(session, coll)
    if cutoff is not None:
        data = data.before(pd.Timestamp(cutoff).tz_convert("UTC").tz_localize(None))
    if data.sales.empty:
        raise ValueError("no sales to train on: run `fairvalue seed` or ingest sales first")
    end = data.sales["ts"].max()
    holdout_start = end - pd.Timedelta(days=settings.holdout_days)
    metrics = holdout_metrics(data, holdout_start, params)
    model = estimator.fit(data, params)
    store = get_store(settings)
    with session_scope() as session:
        coll = collection(session, settings)
        version = register_version(
            session, store, coll, model, metrics,
            data_start=data.sales["ts"].min().tz_localize("UTC").to_pydatetime(),
            data_end=end.tz_localize("UTC").to_pydatetime(),
            n_train=len(data.sales),
            code_version=code_version(),
        )
        first = get_alias(session, coll, CHAMPION) is None
        if first:
            promote(session, coll, version)
        return TrainResult(version.version, version.id, metrics, first)


def holdout_metrics(data, holdout_start: pd.Timestamp, params: estimator.TrainParams) -> dict[str, Any]:
    """Forward score: fit on sales before `holdout_start`, predict each later sale from data
    strictly before it."""
    past = data.before(holdout_start)
    later = data.sales[data.sales["ts"] >= holdout_start].reset_index(drop=True)
    if len(past.sales) < 50 or later.empty:
        return {"holdout": "skipped: not enough sales on one side of the holdout start"}
    model = estimator.fit(past, params)
    pred = model.predict(data, later[["item_key", "ts"]])
    result = valuation_metrics(pred["fair_value"].to_numpy(), later["price"].to_numpy(),
                               pred["p10"].to_numpy(), pred["p90"].to_numpy())
    floor = valuation_metrics(pred["floor"].to_numpy(), later["price"].to_numpy())
    return {"holdout_start": holdout_start.isoformat(), "model": result, "previous_day_floor": floor}


# --- nowcast ----------------------------------------------------------------------------

@dataclass
class NowcastResult:
    snapshot_id: int
    published: bool
    n_items: int
    model_version: int
    archive_uri: str | None
    archive_error: str | None


def nowcast(settings: Settings | None = None, as_of: datetime | None = None) -> NowcastResult:
    """Value every item at `as_of` (default now) with the champion; write, publish, archive."""
    settings = settings or get_settings()
    as_of = as_of or utcnow()
    store = get_store(settings)
    with session_scope() as session:
        coll = collection(session, settings)
        champion = get_alias(session, coll, CHAMPION)
        if champion is None:
            raise LookupError(f"collection {coll.slug} has no champion model: run `fairvalue train`")
        data = load_market_data(session, coll)
    model = load_model(store, champion)
    t = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None)
    values = value_all_items(model, data, t, settings.buy_below, settings.sell_above,
                             settings.signal_max_age_days)
    seen = data.sales[data.sales["ts"] < t]["ts"]
    cutoff = seen.max().tz_localize("UTC").to_pydatetime() if len(seen) else None
    with session_scope() as session:
        snapshot = write_snapshot(session, coll, champion.id, as_of, cutoff, values)
    with session_scope() as session:
        snapshot = session.get(NowcastSnapshot, snapshot.id)
        moved = publish(session, coll, snapshot)
    archive_uri, archive_error = archive_snapshot(settings, snapshot.id, values)
    return NowcastResult(snapshot.id, moved, len(values), champion.version, archive_uri, archive_error)


def archive_snapshot(settings: Settings, snapshot_id: int, values: pd.DataFrame) -> tuple[str | None, str | None]:
    """Archive to the store after publishing: a store outage must not stop valuations.
    The error is returned (and recorded) so the archive can be retried."""
    try:
        stored = get_store(settings).put(
            f"snapshots/{settings.collection}/{snapshot_id}.csv.gz", snapshot_csv_gz(values)
        )
    except ArtifactError as exc:
        return None, str(exc)
    with session_scope() as session:
        snap = session.get(NowcastSnapshot, snapshot_id)
        snap.archive_uri, snap.archive_sha256 = stored.uri, stored.sha256
        session.add(snap)
    return stored.uri, None
