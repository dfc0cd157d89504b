"""Forward evaluation: replay a past period through the live loop, then score valuations,
the strategy backtest and the signals on the same predictions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairvalue.answers import iso
from fairvalue.settings import Settings, get_settings
from models import estimator
from models.ask_kpis import ask_signal_kpis
from models.backtest import BacktestResult, backtest
from models.diagnostics import item_segments, segment_metrics
from models.features import MarketData, floor_before
from models.market_index import daily_index
from models.metrics import valuation_metrics
from models.replay import EXPORT_COLUMNS, ReplayConfig, ReplayResult, replay
from models.signal_kpis import signal_kpis, signal_stability
from models.wash import REASONS as WASH_REASONS
from storage.ingest import first_sale_day

CADENCES = {"1d": pd.Timedelta(days=1), "30m": pd.Timedelta(minutes=30)}


SOURCES = ("auto", "db", "bundled")  # where a replay reads the past from


def check_source(source: str) -> None:
    """A source that names none of SOURCES would silently read the bundled files."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


def load_market(settings: Settings, source: str, sales_files: list[Path], floor_file: Path | None,
                eth_usd_file: Path | None, listings_files: list[Path] | None = None) -> MarketData:
    """The market to replay: the database (when it holds sales and source allows) or the
    bundled files, plus any later events given as files (a market day a file gives replaces the
    stored or bundled one, the other days are kept); with the listings' history when the
    database or `listings_files` hold any (with_listings)."""
    from storage.bundled import market_data_from_files

    check_source(source)
    bundled = settings.data_dir / settings.collection
    if source == "db" or (source == "auto" and _database_has_sales(settings)):
        from storage.db import session_scope
        from storage.market import load_listing_events, load_market_data
        from storage.wash import stored_sales_around

        with session_scope() as session:
            coll = _stored(session, settings.collection)
            data = load_market_data(session, coll, with_excluded=True)
            if sales_files or floor_file or eth_usd_file:
                # The files' sales are flagged as ingest would flag them beside the stored ones.
                extra = market_data_from_files(bundled / "punks.csv", sales_files, _given(floor_file),
                                               _given(eth_usd_file),
                                               settings.min_floor_fraction,
                                               stored_sales=partial(stored_sales_around, session, coll),
                                               first_sale_day=coll.first_day)
                data = merge(data, extra)
            stored_listings = load_listing_events(session, coll)
            first_day = coll.first_day
        # Retention drops replaced listing events older than this (storage/retention.py).
        complete_from = pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timedelta(days=settings.listings_kept_days)
        return with_listings(data, stored_listings, listings_files or [], settings, complete_from, first_day=first_day)
    data = market_data_from_files(
        bundled / "punks.csv", [bundled / "sales.csv", *sales_files],
        # The files' days over the bundled history, as merge lays them over the stored days: a
        # 2021-only floor file had replaced it, and the replay trained without any earlier floor.
        [bundled / "floor.csv", *_given(floor_file)], [bundled / "eth_usd.csv", *_given(eth_usd_file)],
        settings.min_floor_fraction,
        first_sale_day=first_sale_day(settings.collection),
    )
    return with_listings(data, None, listings_files or [], settings, first_day=first_sale_day(settings.collection))


def _given(path: Path | None) -> list[Path]:
    return [] if path is None else [path]


def with_listings(data: MarketData, stored: pd.DataFrame | None, files: list[Path], settings: Settings,
                  complete_from: pd.Timestamp | None = None, *, first_day: date | None) -> MarketData:
    """`data` with the whole history of its listings (models.listings.listing_history), so a
    replay's nowcasts read the asks open at each tick and its asks are judged: the stored events
    (complete only from `complete_from`: retention drops replaced ones before it), then the
    files' (validated as ingest validates them; a refused row is counted by its reason, and an
    event id already given keeps its first report). `data` as it was when there are none.
    `first_day`: the collection's first day of trading (a listing before it is refused)."""
    from models.listings import listing_frame, listing_history, validate_listings
    from models.validation import Reason
    from storage.bundled import named_file, read_listings_file

    frames = [] if stored is None or stored.empty else [stored]
    refused: Counter[str] = Counter()
    for path in files:
        with named_file(path):
            batch = validate_listings(read_listings_file(path), set(data.items.index), datetime.now(UTC),
                                      first_day)
        refused.update(rejection.reason for rejection in batch.rejected)
        frames.append(listing_frame(batch.clean))
    if not frames and not refused:
        return data
    events = pd.concat(frames, ignore_index=True).drop_duplicates() if frames else listing_frame([])
    # An event id reported again with other content keeps its first report, as ingest does.
    conflicting = events.duplicated("event_id")
    if conflicting.any():
        refused[Reason.DUPLICATE_CONFLICT] += int(conflicting.sum())
        events = events[~conflicting]
    book = listing_history(events, _every_sale(data), dict(refused))
    stored_any = stored is not None and not stored.empty
    return replace(data, listings=replace(book, complete_from=complete_from if stored_any else None))


def _every_sale(data: MarketData) -> pd.DataFrame:
    """ts, item_key, price, hour_precision of every sale: the clean ones and the suspected wash
    trades, since any sale ends an item's offers."""
    def of(frame: pd.DataFrame) -> pd.DataFrame:
        hourly = frame["hour_precision"].to_numpy(dtype=bool) if "hour_precision" in frame else False
        return frame[["ts", "item_key", "price"]].assign(hour_precision=hourly)

    frames = [of(data.sales)]
    if data.excluded is not None:
        frames.append(of(data.excluded[data.excluded["reason"].isin(WASH_REASONS)]))
    return pd.concat(frames, ignore_index=True)


def _database_has_sales(settings: Settings) -> bool:
    """The collection is stored and holds a sale (another collection's sales make no replay of it)."""
    try:
        from sqlmodel import select

        from storage.db import session_scope
        from storage.tables import Collection, Sale

        with session_scope() as session:
            return session.exec(select(Sale.id).join(Collection, Collection.id == Sale.collection_id)
                                .where(Collection.slug == settings.collection).limit(1)).first() is not None
    except Exception:
        return False


def _stored(session, slug: str):
    """The stored collection a `--source db` replay reads; a replay is a read and makes none."""
    from fairvalue.errors import NotFound
    from fairvalue.reads import collection_row

    try:
        return collection_row(session, slug)
    except NotFound as exc:
        raise NotFound(f"{exc}; or replay --source bundled") from None


def _suspects(data: MarketData) -> set:
    """The event ids `data.excluded` names as suspected wash trades."""
    if data.excluded is None:
        return set()
    return set(data.excluded["event_id"][data.excluded["reason"].isin(WASH_REASONS)])


def merge(base: MarketData, extra: MarketData) -> MarketData:
    """The stored market and a replay's extra files: the files' new sales added, and the stored
    sales the files show to be suspected wash trades (in extra.excluded) left out. A file's sale
    that is stored already is the stored one: a stored wash trade given again stays out (it was
    trained on and scored, while filtered_out counted it too)."""
    kept = base.sales[~base.sales["event_id"].isin(_suspects(extra))]
    stored = set(base.sales["event_id"]) | _suspects(base)
    sales = pd.concat([kept, extra.sales[~extra.sales["event_id"].isin(stored)]])
    sales = sales.sort_values("ts", kind="stable").reset_index(drop=True)
    market = base.market.set_index("day")
    add = extra.market.set_index("day")
    market = add.combine_first(market) if len(add) else market
    frames = [frame for frame in (base.excluded, extra.excluded) if frame is not None]
    excluded = pd.concat(frames).drop_duplicates(["event_id", "reason"]).sort_values("ts", kind="stable") \
        .reset_index(drop=True) if frames else None
    counts = [c for c in (base.refused_unplaced, extra.refused_unplaced) if c is not None]
    unplaced = dict(sorted(sum((Counter(c) for c in counts), Counter()).items())) if counts else None
    return MarketData(base.items, sales, market.reset_index().sort_values("day").reset_index(drop=True),
                      excluded=excluded, refused_unplaced=unplaced)


@dataclass
class Evaluation:
    replay: ReplayResult
    report: dict[str, Any]
    trades: pd.DataFrame | None = None  # the strategy backtest's, one row per eligible scored sale

    def export_trades(self, path: Path) -> None:
        """`fairvalue backtest --export`: every eligible pair with its entry, exit and return
        (models.backtest.TRADE_COLUMNS; docs/backtest.md), so the figures can be recomputed."""
        frame = self.trades.copy()
        for col in ("entry_ts", "exit_ts"):
            frame[col] = pd.to_datetime(frame[col]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        for col in ("entry_day", "exit_day"):
            frame[col] = pd.to_datetime(frame[col]).dt.strftime("%Y-%m-%d")
        frame.to_csv(path, index=False, float_format="%.6g")

    def export(self, path: Path) -> None:
        frame = self.replay.predictions[EXPORT_COLUMNS].copy()
        for col in ("timestamp", "snapshot_published_at"):
            frame[col] = pd.to_datetime(frame[col]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(path, index=False, float_format="%.6g")


def evaluate(
    data: MarketData, start: pd.Timestamp, end: pd.Timestamp, cadence: str = "1d",
    settings: Settings | None = None, progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    settings = settings or get_settings()
    config = ReplayConfig(
        start=start, end=end, cadence=CADENCES[cadence],
        retrain_max_age=pd.Timedelta(days=settings.retrain_max_age_days),
        params=estimator.TrainParams(**settings.train_params()),
        buy_below=settings.buy_below, sell_above=settings.sell_above,
        signal_max_age_days=settings.signal_max_age_days, market_stale_after_days=settings.market_stale_after_days,
    )
    with estimator.training_threads(settings.train_threads):  # its nowcasts' predicts too, as one job
        result = replay(data, config, progress)
    index = daily_index(data.sales)
    trades = strategy_backtest(result, data, index, settings)
    return Evaluation(result, report(data, result, start, end, cadence, settings, trades, index), trades.trades)


def strategy_backtest(result: ReplayResult, data: MarketData, index: pd.Series, settings: Settings) -> BacktestResult:
    """models/backtest.py on the replay's scored sales, marked by the sales index."""
    return backtest(result.predictions, data.sales, index, threshold=settings.buy_below,
                    horizon_days=settings.backtest_horizon_days)


def report(data: MarketData, result: ReplayResult, start, end, cadence: str, settings: Settings,
           bt: BacktestResult | None = None, index: pd.Series | None = None) -> dict[str, Any]:
    p = result.predictions
    # Replay scores the sales of [start, end) (models/replay.py).
    n_sales_in_window = int(((data.sales["ts"] >= start) & (data.sales["ts"] < end)).sum())
    # The peers' baseline: the raw floor column of the day before the snapshot's day.
    baseline_floor = floor_before(data.market, pd.Series(pd.to_datetime(p["snapshot_published_at"])))
    segments_of = item_segments(data.items, p["item_id"], p["fair_value"])
    index = daily_index(data.sales) if index is None else index  # the backtest's and the signals' market
    bt = strategy_backtest(result, data, index, settings) if bt is None else bt
    kpis = signal_kpis(p, data.sales, index, horizon_days=settings.signal_horizon_days, gain=settings.signal_gain,
                       buy_below=settings.buy_below, sell_above=settings.sell_above)
    segments = segment_metrics(p["fair_value"], p["price"], segments_of, p["p10"], p["p90"]) if len(p) else []
    return {
        "window": {"from": iso(start), "to": iso(end), "cadence": cadence},
        "sales_in_window": n_sales_in_window,
        "filtered_out": filtered_out(data, start, end),
        "model": valuation_metrics(p["fair_value"], p["price"], p["p10"], p["p90"]) if len(p) else {"n": 0},
        "previous_day_floor": valuation_metrics(baseline_floor, p["price"].to_numpy()) if len(p) else {"n": 0},
        "segments": _records(segments),
        "trainings": trainings(result.trainings),
        "backtest": bt.as_dict(),
        "signals": kpis.as_dict(),
        "signal_stability": signal_stability(result.signal_history).as_dict(),
        "ask_signals": ask_signals(data, result, start, end, settings),
    }


def trainings(replayed: list[dict]) -> list[dict]:
    """A replay's trainings for a report: their times (naive UTC, as the models keep them) in UTC
    with their Z, as the API writes every time (they were naive: "2025-05-01T00:00:00")."""
    return [{**t, "trained_at": iso(t["trained_at"]), "data_end": iso(t["data_end"])} for t in replayed]


def ask_signals(data: MarketData, result: ReplayResult, start, end, settings: Settings) -> dict[str, Any] | None:
    """models.ask_kpis on the replay's asks, each valued by the tick before it; None for a market
    replayed without listings. Settled by the last sale: whether an ask was taken is known only
    as far as the sales go, so an ask whose end comes later is pending. `complete_from` names
    where a store's retention may have dropped asks, when the window starts before it."""
    book = data.listings
    if book is None:
        return None
    events = book.events
    listed = events[events["price"].notna() & (events["ts"] >= start) & (events["ts"] < end)]
    every_sale = _every_sale(data)
    as_of = every_sale["ts"].max()
    kpis = ask_signal_kpis(result.asks, events, every_sale, as_of, horizon_days=settings.signal_horizon_days,
                           buy_below=settings.buy_below)
    incomplete = book.complete_from is not None and start < book.complete_from
    return {"asks_in_window": len(listed), "asks_valued": len(result.asks), "listings_refused": book.refused,
            "settled_by": iso(as_of), "complete_from": iso(book.complete_from) if incomplete else None,
            **kpis.as_dict()}


def filtered_out(data: MarketData, start, end) -> dict[str, Any] | None:
    """The window's sales that were not scored because the model never sees them, by reason:
    suspected wash trades and rows refused at ingest (a report names both, never drops them).
    `refused_unplaced`, when there are any: the rows refused with no time a window can hold, by
    reason, of the whole market (none can be placed in a window, so none is dropped unsaid).
    None when the market was loaded without them."""
    if data.excluded is None:
        return None
    in_window = data.excluded[(data.excluded["ts"] >= start) & (data.excluded["ts"] < end)]
    counts = in_window["reason"].value_counts().sort_index()
    filtered = {"n": int(counts.sum()), "by_reason": {str(k): int(v) for k, v in counts.items()}}
    if data.refused_unplaced:
        filtered["refused_unplaced"] = dict(data.refused_unplaced)
    return filtered


def describe_filtered(filtered: dict[str, Any] | None) -> str:
    """The printed reports' line: "filtered out: 8 (wash_repeated_pair 6, ...)", and a second one
    for the rows refused without a time when there are any."""
    if filtered is None:
        return "filtered out: not known (market loaded without them)"
    reasons = _by_reason(filtered["by_reason"])
    line = f"filtered out: {filtered['n']}" + (f" ({reasons})" if reasons else "")
    unplaced = filtered.get("refused_unplaced")
    if unplaced:
        line += (f"\nrefused without a time any window holds (in no count above): {sum(unplaced.values())} "
                 f"({_by_reason(unplaced)})")
    return line


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.items())


def _records(frame) -> list[dict]:
    if isinstance(frame, pd.DataFrame):
        return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")]
    return list(frame)


# --- daily-priced collections (trading cards) -------------------------------------------

def load_daily(settings: Settings, source: str = "auto"):
    """The daily series to replay: the database's (when the collection holds prices and source
    allows) or the bundled fixture (config/cards.yaml + data/cards/prices.csv)."""
    from models.daily import DailySeries

    check_source(source)
    if source in ("db", "auto"):
        from storage.db import session_scope
        from storage.prices import load_daily_series

        try:
            with session_scope() as session:
                series = load_daily_series(session, _stored(session, settings.collection))
        except Exception:
            if source == "db":
                raise
            series = None
        if series is not None and (len(series.prices) or source == "db"):
            return series
    from fairvalue.card_universe import read_universe

    universe = read_universe(settings.cards_config)
    items = pd.DataFrame({"item_key": [c.id for c in universe.cards], "category": [c.category for c in universe.cards],
                          "active": [c.active for c in universe.cards]}).set_index("item_key").sort_index()
    prices = pd.read_csv(settings.data_dir / "cards" / "prices.csv").rename(
        columns={"date": "day", "card_id": "item_key", "market_price": "price"})
    prices["day"] = pd.to_datetime(prices["day"]).astype("datetime64[ns]")
    return DailySeries(items, prices.sort_values(["day", "item_key"]).reset_index(drop=True))


class NotEnoughHistory(ValueError):
    """A replay window that starts before the first day a model could be trained for."""


def replay_daily_rows(series, start: pd.Timestamp, end: pd.Timestamp, settings: Settings,
                      retrain_every_days: int | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Every card-day of [start, end) valued by a model trained on the days before it
    (models.daily_eval.replay_daily). NotEnoughHistory when the window starts before a model
    could be trained, or a retrain tick has too little to train on."""
    from models.daily import MIN_TRAIN_DAYS, TooFewPrices, earliest_forward_day
    from models.daily_eval import DailyReplayConfig, replay_daily

    earliest = earliest_forward_day(series)
    if earliest is None or start < earliest:
        raise NotEnoughHistory("not enough prices before the window to train a model: " + (
            f"the window may start on {earliest.date()} at the earliest" if earliest is not None
            else f"the collection has fewer than {MIN_TRAIN_DAYS} days of prices"))

    # Nothing is priced after the last day, so replaying past it only refits the same model each
    # week: a window to 2035 cost minutes per request. The rows are the same without those weeks.
    end = min(end, series.last_day + pd.Timedelta(days=1))
    config = DailyReplayConfig(start, end, retrain_every_days=retrain_every_days or max(1, int(
        settings.retrain_max_age_days)), buy_below=settings.buy_below, sell_above=settings.sell_above)
    try:
        return replay_daily(series, config)
    except TooFewPrices as exc:
        # 14 priced days are not enough when they hold too few card-days with a fair value to tune
        # on (a few cards, or cards that have just started): a refusal of the window, as above,
        # which the CLI and the API answer as a bad `from`, not a traceback or a 500.
        raise NotEnoughHistory(f"not enough prices before the window to train a model: {exc}") from None


def evaluate_daily(series, start: pd.Timestamp, end: pd.Timestamp, settings: Settings,
                   horizon_days: float | None = None, gain: float | None = None,
                   retrain_every_days: int | None = None, replay: tuple | None = None) -> dict[str, Any]:
    """Replay a daily-priced collection and compute its KPIs (models/daily_eval.py). ValueError for a
    horizon that is not a whole number of days: the outcomes are read on whole days. `replay`:
    replay_daily_rows' answer for these arguments, when the caller has it already."""
    from models.daily_eval import kpis

    if horizon_days is not None and not float(horizon_days).is_integer():  # int() would cut 1.9 to 1, unsaid
        raise ValueError(f"horizon_days must be a whole number of days, got {horizon_days:g}")
    rows, replayed = replay or replay_daily_rows(series, start, end, settings, retrain_every_days)
    # The window in UTC times with their Z, as the punks' report and every answer write it (it was
    # plain dates here alone, beside the same window's times in the cards' /backtest).
    report = {"window": {"from": iso(start.to_pydatetime()), "to": iso(end.to_pydatetime())},
              **kpis(rows, series, start, end, int(horizon_days or settings.daily_signal_horizon_days),
                     gain if gain is not None else settings.daily_signal_gain)}
    report["trainings"] = trainings(replayed)
    report["thresholds"] = {"buy_below": settings.buy_below, "sell_above": settings.sell_above}
    return report


def backtest_daily(series, start: pd.Timestamp, end: pd.Timestamp, settings: Settings,
                   replay: tuple | None = None) -> dict[str, Any]:
    """The cards' strategy backtest (models/daily_backtest.py) on the same replayed card-days as
    evaluate_daily, at the threshold the cards' BUY signals use (`replay` as evaluate_daily's)."""
    from models.daily_backtest import daily_backtest

    rows, _ = replay or replay_daily_rows(series, start, end, settings)
    return daily_backtest(rows, series.prices, threshold=settings.buy_below).as_dict()
