"""The `fairvalue` command: operators' entry point to every job."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from fairvalue.settings import Settings, get_settings
from tasks import names, queues

app = typer.Typer(help="fairvalue: live fair values for collectibles markets.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ingest_app = typer.Typer(help="Backfill market data from files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
tokens_app = typer.Typer(help="Operators' API tokens (stored hashed).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
cards_app = typer.Typer(help="Trading cards: the card universe, its price fixture and the daily price collection.",
                        no_args_is_help=True)
app.add_typer(cards_app, name="cards")
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # what went wrong: kept out of stdout, which --json keeps for JSON


def refuse(detail: object, what: str = "") -> None:
    """Say on stderr why a command did nothing: `what` in red, then the detail. Both are printed as
    they are, never read as rich markup: a refusal quoting a pattern (`^[a-z0-9][a-z0-9-]{0,63}$`)
    lost its brackets."""
    if what:
        errors.print(f"[red]{escape(what)}[/] {escape(str(detail))}")
    else:
        errors.print(f"[red]{escape(str(detail))}[/]")


COLLECTION_OPTION = typer.Option(None, "--collection", help="Collection slug (default: FAIRVALUE_COLLECTION).")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from models.validation import parse_timestamp

    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError) as exc:  # not ISO 8601, before 1970, or past datetime's range
        raise typer.BadParameter(f"{value!r} is not a usable ISO 8601 time ({exc})") from None


def _settings_for(collection: str | None) -> Settings:
    """The settings of the collection --collection names (default FAIRVALUE_COLLECTION). The slug
    must be a known one (storage.ingest.COLLECTION_NAMES, which `seed` and `cards load` make), one
    with files in the data folder (a replay of them needs no database), or a stored one. Anything
    else is refused here, before any command runs, so a mistyped slug creates nothing: most
    commands would otherwise make the collection on first use."""
    from fairvalue.errors import NotFound
    from fairvalue.reads import collection_row
    from storage.db import session_scope
    from storage.ingest import COLLECTION_NAMES

    settings = get_settings().for_collection(collection)
    slug = settings.collection
    if slug in COLLECTION_NAMES or (settings.data_dir / slug).is_dir():
        return settings
    try:
        with session_scope() as session:
            collection_row(session, slug)
    except NotFound as exc:
        refuse(exc)
        raise typer.Exit(1) from None
    return settings


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest revision."""
    from storage.migrate import upgrade

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade()
    console.print(f"database at head: {_redact(settings.resolved_database_url())}")


def _print_report(title: str, report, noun: str = "sales") -> None:
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_row(f"new {noun}", str(report.accepted))
    table.add_row("duplicates", str(report.duplicate))
    table.add_row("rejected", str(report.rejected))
    _add_rejections(table, report)
    console.print(table)


def _add_rejections(table: Table, report) -> None:
    """The rejected rows by reason, and how many were kept already (an identical row refused before)."""
    if report.rejected_kept_before:
        table.add_row("  rejected, kept already", str(report.rejected_kept_before))
    for reason, n in sorted(report.reasons.items()):
        table.add_row(f"  rejected: {reason}", str(n))


@app.command()
def seed(collection: str = COLLECTION_OPTION) -> None:
    """Load the bundled market (items, floor, ETH/USD, sales). Safe to run again."""
    from fairvalue import pipeline
    from storage.bundled import UnreadableFile, read_sales_file

    settings = _settings_for(collection)  # a mistyped slug is refused here
    try:
        pipeline.check_seedable(settings)  # before the files are counted: cards have none to seed
        total = sum(1 for _ in read_sales_file(settings.data_dir / settings.collection / "sales.csv"))
    except pipeline.CannotSeed as exc:
        refuse(exc, "nothing seeded:")
        raise typer.Exit(1) from None
    except UnreadableFile as exc:
        refuse(exc, f"nothing seeded: sales.csv of {settings.collection}:")
        raise typer.Exit(2) from None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sales", total=total)
        report = pipeline.seed(settings, progress=lambda n: progress.advance(task, n))
    console.print(f"items: {report.new_items} new; market days: {report.new_market_days} new or changed")
    _print_report("seed: sales", report.sales)


@ingest_app.command("sales")
def ingest_sales(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or JSON lines"),
                 collection: str = COLLECTION_OPTION) -> None:
    """Validate and store sales from a file; rejected rows are kept with their reason."""
    from fairvalue import pipeline

    _ingest_events(path, collection, pipeline.ingest_file, "sales", names.AFTER_SALES,
                   "a nowcast is asked for when enough sales are new",
                   "the next scheduled nowcast includes these sales")


@ingest_app.command("listings")
def ingest_listings(path: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                help="CSV or JSON lines: event_id, timestamp, item_id, price[, "
                                                     "expires_at, source]; an empty or null price withdraws"),
                    collection: str = COLLECTION_OPTION) -> None:
    """Validate and store listing events (asks) from a file; rejected rows are kept with their reason."""
    from fairvalue import pipeline

    _ingest_events(path, collection, pipeline.ingest_listings_file, "listings", names.AFTER_LISTINGS,
                   "a nowcast is asked for to read the new asks", "the next scheduled nowcast reads these listings")


def _ingest_events(path: Path, collection: str | None, ingest, noun: str, follow_up: str, sent: str,
                   otherwise: str) -> None:
    """A file of events into a collection that takes sales (and so their listings), then the
    webhook's follow-up task when anything new was stored."""
    from fairvalue import pipeline
    from storage.bundled import UnreadableFile

    settings = _settings_for(collection)
    try:
        pipeline.check_takes_sales(settings.collection)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(path.name, total=None)
            report = ingest(path, settings, progress=lambda n: progress.advance(task, n))
    except (pipeline.CannotTakeSales, UnreadableFile) as exc:  # before any row is stored
        refuse(exc, f"{path.name} not ingested:")
        raise typer.Exit(2) from None
    _print_report(f"ingest {path.name} into {settings.collection}", report, noun=noun)
    if report.accepted:
        from tasks.app import app as celery_app

        if _send_after_commit(otherwise, celery_app.send_task, follow_up, args=[report.accepted],
                              kwargs={"collection": settings.collection}):
            console.print(f"follow-up sent: {sent}")


# The follow-up of stored prices, as the collector's task asks for it (tasks/cards.py): any new or
# changed price is a card-day the published snapshot has not valued.
PRICES_SENT = "a nowcast is asked for to value the new prices"
PRICES_OTHERWISE = "the next scheduled nowcast values these prices"


@ingest_app.command("prices")
def ingest_prices(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: date, card_id, market_price[, volume]"),
    collection: str = typer.Option("cards", "--collection", help="A daily-priced collection."),
) -> None:
    """Validate and upsert daily card prices from a CSV; rejected rows are kept with their reason."""
    from fairvalue.card_prices import ingest_prices_file
    from storage.bundled import UnreadableFile

    settings = _settings_for(collection)
    try:
        report = ingest_prices_file(path, settings)
    except (LookupError, UnreadableFile) as exc:
        refuse(exc)
        raise typer.Exit(2) from None
    table = Table(title=f"ingest {path.name} into {collection}")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for name in ("new", "changed", "unchanged", "repeated_in_batch", "rejected"):
        table.add_row(name.replace("_", " "), str(getattr(report, name)))
    _add_rejections(table, report)
    console.print(table)
    if report.stored:
        from tasks.app import request_nowcast

        if _send_after_commit(PRICES_OTHERWISE, request_nowcast, settings.collection):
            console.print(f"follow-up sent: {PRICES_SENT}")


@cards_app.command("collect")
def cards_collect(collection: str = typer.Option("cards", "--collection"),
                  days: int = typer.Option(None, help="Days of history per card (default from settings).")) -> None:
    """Fetch the active cards' prices from the price API now (what the daily beat task does), then
    ask for a nowcast when any price is new or changed (`follow_up` in the answer)."""
    from fairvalue.card_prices import collect
    from tasks.app import request_nowcast, send_after_commit

    settings = _settings_for(collection)
    try:
        report = collect(settings, days=days)
    except LookupError as exc:  # not a daily-priced collection, or no cards: before any call to the price API
        refuse(exc, "nothing collected:")
        raise typer.Exit(2) from None
    follow_up = "none"
    if report.prices.stored:  # said in the JSON, as the webhooks' answers say it: stdout stays one JSON answer
        why = send_after_commit(request_nowcast, settings.collection)
        follow_up = f"sent: {PRICES_SENT}" if why is None else f"not sent ({why}); {PRICES_OTHERWISE}"
    console.print_json(json.dumps({**report.as_dict(), "follow_up": follow_up}))


@app.command()
def train(cutoff: str = typer.Option(None, help="Train only on sales before this ISO time."),
          collection: str = COLLECTION_OPTION) -> None:
    """Train a model version on the stored sales and register it (the first becomes champion)."""
    from fairvalue import pipeline

    try:
        with console.status("training"):
            result = pipeline.train(_settings_for(collection), cutoff=_parse_time(cutoff))
    except pipeline.TRAINING_REFUSALS as exc:  # no prices, or too few: what the data refused
        refuse(exc, "nothing trained:")
        raise typer.Exit(1) from None
    console.print(f"registered version {result.version}" + (" (champion)" if result.became_champion else ""))
    console.print_json(json.dumps(result.metrics, default=str))
    if result.diagnostics_uri:
        console.print(f"diagnostics: {result.diagnostics_uri}", soft_wrap=True)  # a URI to copy whole


@app.command()
def drift(
    days: int = typer.Option(30, help="The recent window: this many days up to the latest sale.", min=1),
    out: Path = typer.Option(None, help="Also write the HTML report here.", callback=lambda p: _writable(p, "--out")),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Feature and prediction drift: the champion's training window vs the recent window."""
    from fairvalue import pipeline
    from fairvalue.errors import NotFound

    settings = _settings_for(collection)
    try:
        with console.status("measuring drift"):
            report, uri = pipeline.drift(settings, recent_days=days)
    except (NotFound, pipeline.NoChampion, pipeline.NotMeasured) as exc:
        refuse(exc)
        raise typer.Exit(1) from None
    if out:
        out.write_text(report.to_html())
    if as_json:
        print(json.dumps(report.as_dict(), default=str, allow_nan=False))
        return
    s = report.summary
    prediction_psi = s.get("prediction_psi")
    max_psi = s.get("max_psi")
    console.print(f"{s['n_drifted']} of {s['n_features']} features drifted (max PSI "
                  + ("-" if max_psi is None else f"{max_psi:.2f}") + "); prediction PSI "
                  + ("-" if prediction_psi is None else f"{prediction_psi:.2f}"))
    too_few = report.thresholds["min_samples"]
    if min(s["n_ref"], s["n_cur"]) < too_few:  # a PSI of a handful of sales says nothing
        console.print(f"[yellow]{s['n_cur']} recent and {s['n_ref']} training sales: under {too_few} in a window, "
                      "no feature is called drifted; widen --days[/]")
    console.print(f"report: {out or uri}", soft_wrap=True)


@app.command()
def nowcast(as_of: str = typer.Option(None, help="Value at this ISO time instead of now."),
            collection: str = COLLECTION_OPTION) -> None:
    """Value every item with the champion and publish the snapshot."""
    from fairvalue import pipeline
    from fairvalue.errors import NotFound

    settings = _settings_for(collection)
    try:
        with console.status("nowcasting"):
            result = pipeline.nowcast(settings, as_of=_parse_time(as_of))
    except (NotFound, pipeline.NoChampion, pipeline.FutureAsOf, pipeline.NothingToValue) as exc:  # nothing to value
        # yet, a future --as-of, or one before the market's first input
        refuse(exc, "nothing published:")
        raise typer.Exit(1) from None
    console.print(
        f"snapshot {result.snapshot_id}: {result.n_items} items, model v{result.model_version}, "
        f"{'published' if result.published else 'not published (a later snapshot is)'}; "
        f"archive: {result.archive_uri or result.archive_error}", soft_wrap=True,
    )


@app.command()
def archive(limit: int = typer.Option(20, help="Archive at most this many snapshots.", min=1),
            collection: str = COLLECTION_OPTION) -> None:
    """Archive published snapshots a store outage left without an archive, then thin what is older
    than FAIRVALUE_RETENTION_DAYS and prune the webhook deliveries and task runs older than
    FAIRVALUE_AUDIT_RETENTION_DAYS (beat does both hourly)."""
    from fairvalue import pipeline

    settings = _settings_for(collection)
    report = pipeline.archive_pending(settings, limit=limit)
    for snapshot_id, uri in report.archived.items():
        console.print(f"snapshot {snapshot_id}: archived to {uri}")
    for snapshot_id, error in report.failed.items():
        refuse(error, f"snapshot {snapshot_id}: not archived:")
    console.print(f"{report.pending} snapshot(s) still without an archive")
    thinned = pipeline.apply_retention(settings)  # only archived snapshots are thinned: it runs whatever the store said
    console.print(f"retention: {thinned.snapshots_thinned} snapshot(s) thinned ({thinned.rows_deleted} rows), "
                  f"{thinned.listing_events_deleted} replaced listing event(s) dropped, "
                  f"{thinned.webhook_deliveries_deleted} webhook delivery record(s) and "
                  f"{thinned.task_runs_deleted} task run(s) pruned", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


def _writable(path: Path | None, option: str) -> Path | None:
    """An output file's folder must exist and take files before any work: a replay of a quarter
    took minutes and then failed to write its export."""
    if path is None:
        return None
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise typer.BadParameter(f"cannot write {path}: it is a folder, or its folder does not exist or takes no "
                                 "files", param_hint=option)
    return path


def _check_source(source: str) -> None:
    """Before any work: the replay's loaders refuse it too, later (fairvalue.evaluation.check_source)."""
    from fairvalue.evaluation import check_source

    try:
        check_source(source)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from None


def _evaluate(from_, to, cadence, sales, floor, eth_usd, source, collection=None, listings=None):
    import pandas as pd

    from fairvalue import evaluation
    from models.estimator import TooFewSales
    from storage.bundled import BadMarketFile, UnreadableFile

    if cadence not in evaluation.CADENCES:
        raise typer.BadParameter(f"cadence must be one of {sorted(evaluation.CADENCES)}", param_hint="--cadence")
    _check_source(source)
    start = pd.Timestamp(_parse_time(from_)).tz_convert("UTC").tz_localize(None)
    end = pd.Timestamp(_parse_time(to)).tz_convert("UTC").tz_localize(None)
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    settings = get_settings().for_collection(collection)  # checked by the command (_settings_for)
    try:
        data = evaluation.load_market(settings, source, list(sales or []), floor, eth_usd, list(listings or []))
    except (UnreadableFile, BadMarketFile) as exc:  # an events or market file refused whole: its path, line, problem
        refuse(exc, "nothing replayed:")
        raise typer.Exit(2) from None
    _check_window_holds_events(data, start, end)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        try:
            return evaluation.evaluate(
                data, start, end, cadence, settings,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except TooFewSales as exc:  # the first tick trains on the sales before --from
            raise typer.BadParameter(f"{exc} before the window: start it later", param_hint="--from") from None


def _check_window_holds_events(data, start, end) -> None:
    """A window without a sale or a listing event scores nothing: refused before the replay trains
    (half a minute), as the API refuses a window past the data."""
    def inside(times) -> bool:
        return bool(((times >= start) & (times < end)).any())

    if inside(data.sales["ts"]) or (data.listings is not None and inside(data.listings.events["ts"])):
        return
    span = (f"the sales run from {data.sales['ts'].min():%Y-%m-%d} to {data.sales['ts'].max():%Y-%m-%d}"
            if len(data.sales) else "there is no sale")
    raise typer.BadParameter(f"the window holds no sale or listing event to score; {span}",
                             param_hint="--from/--to")


_FILE = dict(exists=True, dir_okay=False)


@app.command()
def replay(
    from_: str = typer.Option(..., "--from", help="First moment replayed (ISO date or time)."),
    to: str = typer.Option(..., "--to", help="End of the replay (exclusive)."),
    cadence: str = typer.Option("1d", help="How often a nowcast is published: 1d or 30m."),
    sales: list[Path] = typer.Option(None, "--sales", help="Later sales (same columns as sales.csv).", **_FILE),
    floor: Path = typer.Option(None, "--floor", help="Floor file (date, floor_eth).", **_FILE),
    eth_usd: Path = typer.Option(None, "--eth-usd", help="ETH/USD file (date, eth_usd).", **_FILE),
    listings: list[Path] = typer.Option(None, "--listings", help="Listing events (as `ingest listings` reads): "
                                        "the nowcasts read the open asks, and each ask is judged.", **_FILE),
    source: str = typer.Option("auto", help="auto (database if it holds sales), db or bundled."),
    export: Path = typer.Option(None, help="Write one row per scored sale to this CSV.",
                                callback=lambda p: _writable(p, "--export")),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    collection: str = COLLECTION_OPTION,
    horizon: float = typer.Option(None, help="Daily markets: signal horizon in days (1-90)."),
    gain: float = typer.Option(None, help="Daily markets: the move that makes a BUY/SELL right, e.g. 0.05 "
                               "(above 0, under 1)."),
) -> None:
    """Step the live loop through a past period and score each sale against the last nowcast
    published before it (for a daily-priced collection: every card-day, with its KPIs)."""
    _settings_for(collection)  # a mistyped slug is refused before any work
    if _is_daily(collection):
        given = [name for name, is_given in (
            ("--cadence", cadence != "1d"), ("--sales", bool(sales)), ("--floor", floor is not None),
            ("--eth-usd", eth_usd is not None), ("--listings", bool(listings)), ("--export", export is not None))
            if is_given]
        if given:  # silently ignored before
            raise typer.BadParameter("a daily-priced collection's replay values every card-day from its stored "
                                     "prices; it takes --from, --to, --source, --horizon, --gain and --json",
                                     param_hint=given[0])
        _replay_daily(collection, from_, to, source, horizon, gain, as_json)
        return
    result = _evaluate(from_, to, cadence, sales, floor, eth_usd, source, collection, listings)
    if export:
        result.export(export)
    if as_json:
        print(json.dumps(result.report, default=str, allow_nan=False))
        return
    _print_accuracy(result.report)
    if export:
        console.print(f"wrote {len(result.replay.predictions)} rows to {export}")


def _is_daily(collection: str | None) -> bool:
    """By the stored collection's kind; one not stored (or no database: a replay of the bundled
    files needs none) by its known name (cards)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import select

    from storage.db import session_scope
    from storage.ingest import COLLECTION_NAMES, DAILY_PRICES
    from storage.tables import Collection

    if not collection:
        return False
    try:
        with session_scope() as session:
            kind = session.exec(select(Collection.kind).where(Collection.slug == collection)).first()
    except SQLAlchemyError:
        kind = None
    return (kind or COLLECTION_NAMES.get(collection, ("", ""))[1]) == DAILY_PRICES


def _replay_daily(collection, from_, to, source, horizon, gain, as_json) -> None:

    from fairvalue import evaluation

    start, end = _day_window(from_, to)
    if horizon is not None and not 1 <= horizon <= 90:
        raise typer.BadParameter("--horizon must be between 1 and 90 days")
    if gain is not None and not 0 < gain < 1:  # a fall of 100 % or more is no move a price can make
        raise typer.BadParameter("--gain must be above 0 and under 1, e.g. 0.05 for 5 %", param_hint="--gain")
    _check_source(source)
    settings = get_settings().for_collection(collection)  # checked by the command (_settings_for)
    with console.status("replaying"):
        series = evaluation.load_daily(settings, source)
        _check_days_hold_prices(series, start, end)
        try:
            report = evaluation.evaluate_daily(series, start, end, settings, horizon, gain)
        except evaluation.NotEnoughHistory as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None
    if as_json:
        print(json.dumps(report, default=str, allow_nan=False))
        return
    pct = _pct
    num = lambda v: "-" if v is None else f"{v:,.2f}"  # noqa: E731
    table = Table(title=f"{collection}: forward accuracy {report['window']['from']} .. {report['window']['to']}")
    for col in ("", "n", "MAPE", "median APE", "RMSE", "median bias", "band coverage"):
        table.add_column(col, justify="right")
    for name, m in [("model", report["model"]), ("previous price", report["previous_price"])] + [
            (f"  {r['value']}", r) for r in report["per_category"]]:
        table.add_row(name, str(m.get("n", 0)), pct(m.get("mape")), pct(m.get("median_ape")), num(m.get("rmse")),
                      pct(m.get("bias")), pct(m.get("band_coverage")))
    console.print(table)
    worst = sorted(report["per_card"], key=lambda r: -(r.get("mape") or 0))[:5]
    console.print("worst cards by MAPE: " + ", ".join(f"{r['value']} {pct(r['mape'])}" for r in worst))
    s = report["signals"]
    console.print(f"coverage {pct(report['coverage'])} of {report['card_days_priced']} priced card-days; "
                  f"signal rate {pct(s['signal_rate'])}; alerts {s['distribution']}")
    console.print(f"over {s['horizon_days']} days, gain {s['gain']:.0%}: BUY precision {pct(s['buy']['precision'])} "
                  f"recall {pct(s['buy']['recall'])} (n={s['buy']['n_known']}, base rate {pct(s['base_rate_rise'])}); "
                  f"SELL precision {pct(s['sell']['precision'])} recall {pct(s['sell']['recall'])} "
                  f"(n={s['sell']['n_known']}, base rate {pct(s['base_rate_fall'])})")
    st = report["signal_stability"]
    console.print(f"stability: flip rate {pct(st['flip_rate'])} per card-day, mean run {num(st['mean_run_length'])} "
                  f"days; alerts per category {report['signals_per_category']}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _print_accuracy(report: dict) -> None:
    from fairvalue.evaluation import describe_filtered

    table = Table(title=f"forward accuracy {report['window']['from']} .. {report['window']['to']}")
    for col in ("", "n", "MAPE", "median APE", "median bias", "mean bias", "within 10%", "band coverage",
                "band width (log)", "band score"):
        table.add_column(col, justify="right")
    for name in ("model", "previous_day_floor"):
        m = report[name]
        table.add_row(name, str(m.get("n", 0)), *(f"{m[k]:.2%}" if k in m else "-" for k in
                      ("mape", "median_ape", "bias", "mean_bias", "within_10pct", "band_coverage")),
                      # the band's median log width and interval score (models.metrics.interval_scores)
                      *(f"{m[k]:.3f}" if k in m else "-" for k in ("band_width", "band_score")))
    console.print(table)
    console.print(describe_filtered(report.get("filtered_out")))
    asks = report.get("ask_signals")
    if asks:
        console.print(f"asks: {asks['asks_valued']} valued, {asks['n_known']} settled; taken: BUY "
                      f"{_pct(asks['taken_rate_by_signal']['BUY'])} vs every ask {_pct(asks['base_rate_taken'])}"
                      + (f"; {sum(asks['listings_refused'].values())} listing rows refused "
                         f"{asks['listings_refused']}" if asks["listings_refused"] else ""))


@app.command()
def backtest(
    from_: str = typer.Option(..., "--from", help="First moment replayed."),
    to: str = typer.Option(..., "--to", help="End of the replay (exclusive)."),
    cadence: str = typer.Option("1d", help="How often a nowcast is published: 1d or 30m."),
    source: str = typer.Option("auto", help="auto, db or bundled."),
    as_json: bool = typer.Option(False, "--json", help="Print the strategies' figures as JSON."),
    export: Path = typer.Option(None, help="Write every eligible pair with its entry, exit and return to "
                                "this CSV (docs/backtest.md).", callback=lambda p: _writable(p, "--export")),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Replay, then trade: buy what the model calls undervalued vs buy every completed sale vs buy
    what is under the week's median sale, without the model (docs/backtest.md) (for a
    daily-priced collection: hold each day the cards it calls undervalued vs every priced card)."""
    _settings_for(collection)  # a mistyped slug is refused before any work
    if _is_daily(collection):
        if export is not None:
            raise typer.BadParameter("the pairs are a collection of unique items' (sales); a daily-priced "
                                     "collection's card-days are in `replay --collection ... --json`",
                                     param_hint="--export")
        bt, signals, what = _backtest_daily(collection, from_, to, source), None, "card-days"
    else:
        result = _evaluate(from_, to, cadence, None, None, None, source, collection)
        bt, signals, what = result.report["backtest"], result.report["signals"], "pairs"
        if export is not None:
            result.export_trades(export)
            errors.print(f"wrote {len(result.trades)} pairs to {export}")
    if as_json:
        # A daily collection's signal KPIs are `replay --collection`'s report, not the punks' signals.
        print(json.dumps({"backtest": bt} | ({"signals": signals} if signals else {}), default=str, allow_nan=False))
        return
    # Without the outer edges the three rows' table fits 80 columns (no header wraps).
    table = Table(title=f"backtest: {bt['n_eligible']} eligible {what}, {bt['n_filtered']} filtered",
                  show_edge=False, pad_edge=False)
    for col in ("strategy", "trades", "total return", "Sharpe", "Sortino", "Calmar", "max drawdown"):
        table.add_column(col, justify="right")
    # The cards' daily backtest has no below_market baseline (docs/cards.md).
    for name in [n for n in ("strategy", "below_market", "buy_all") if n in bt]:
        s = bt[name]
        fmt = lambda v, pct=False: "-" if v is None else (f"{v:.2%}" if pct else f"{v:.2f}")  # noqa: E731
        table.add_row(name, str(s["n_trades"]), fmt(s["total_return"], True), fmt(s["sharpe"]),
                      fmt(s["sortino"]), fmt(s["calmar"]), fmt(s["max_drawdown"], True))
    console.print(table)


def _day_window(from_: str, to: str):
    """--from and --to of a daily-priced collection as whole UTC days (naive midnights)."""
    import pandas as pd

    start = pd.Timestamp(_parse_time(from_)).tz_convert("UTC").tz_localize(None).normalize()
    end = pd.Timestamp(_parse_time(to)).tz_convert("UTC").tz_localize(None).normalize()
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    return start, end


def _check_days_hold_prices(series, start, end) -> None:
    """A window without a price scores nothing: refused, as `_check_window_holds_events` for sales."""
    days = series.prices["day"]
    if not ((days >= start) & (days < end)).any():
        span = (f"the prices run from {days.min():%Y-%m-%d} to {days.max():%Y-%m-%d}" if len(days)
                else "no price is stored")
        raise typer.BadParameter(f"the window holds no price to score; {span}", param_hint="--from/--to")


def _backtest_daily(collection: str, from_: str, to: str, source: str) -> dict:
    """models/daily_backtest.py on the card-days `replay --collection` scores (docs/cards.md)."""

    from fairvalue import evaluation

    start, end = _day_window(from_, to)
    _check_source(source)
    settings = get_settings().for_collection(collection)  # checked by the command (_settings_for)
    with console.status("replaying"):
        series = evaluation.load_daily(settings, source)
        _check_days_hold_prices(series, start, end)
        try:
            return evaluation.backtest_daily(series, start, end, settings)
        except evaluation.NotEnoughHistory as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None


def cli_operator() -> str:
    """Who acted, for the decision trail: the CLI has no token, so the login of the shell that ran
    it ("cli:alice"), as an API call records its token's name."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container's numeric uid): the CLI still acted
        return "cli"


def _parse_params(params: list[str] | None) -> dict:
    out = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def retrain(
    reason: str = typer.Option(..., help="Why (kept with the request)."),
    param: list[str] = typer.Option(None, "--param", help="Training parameter override KEY=VALUE (repeat)."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Record a training request and publish it to the training queue."""
    from fairvalue import lifecycle
    from tasks.lifecycle import request_training

    settings = _settings_for(collection)
    try:
        done = request_training(reason, _parse_params(param), settings, operator=cli_operator())
    except lifecycle.BadTrainingParams as exc:
        raise typer.BadParameter(str(exc), param_hint="--param") from None
    except lifecycle.BadReason as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    console.print(f"training request {done.request_id} queued")
    if done.paused:
        # Not published: the message would only be skipped. Resuming the loop publishes it.
        console.print("[yellow]the training loop is paused: the request is kept and runs on "
                      "`fairvalue resume training`[/]")
    elif done.not_sent is not None:
        console.print(f"[yellow]not sent ({done.not_sent}); the training sweep (hourly) publishes it[/]")
    else:
        console.print(f"published to the {queues.TRAINING} queue: a training worker takes it")


def _send_after_commit(then: str, send, *args, **kwargs) -> bool:
    """Send the message that follows a committed change; say so when it could not be sent."""
    from tasks.app import send_after_commit

    why = send_after_commit(send, *args, **kwargs)
    if why is not None:
        console.print(f"[yellow]not sent ({why}); {then}[/]")
    return why is None


@app.command("promote")
def promote_cmd(version: int = typer.Argument(..., help="Model version number."),
                reason: str = typer.Option("operator", help="Recorded with the decision."),
                force: bool = typer.Option(False, "--force", help="Promote a version the gates rejected or the "
                                           "monitor rolled back (the override is recorded with the decision)."),
                collection: str = COLLECTION_OPTION) -> None:
    """Make a model version the champion (recorded as an operator decision), then nowcast. A version
    the gates rejected or the monitor rolled back is refused unless --force."""
    from fairvalue import lifecycle

    settings = _settings_for(collection)
    try:
        result = lifecycle.operator_promote(version, reason, settings, operator=cli_operator(), force=force)
    except lifecycle.BadReason as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    except lifecycle.RejectedByGates as exc:
        refuse(f"{exc}; pass --force to promote it anyway", "not promoted:")
        raise typer.Exit(1) from None
    except (LookupError, lifecycle.ArtifactRefused) as exc:
        refuse(exc, "not promoted:")
        raise typer.Exit(1) from None
    console.print(f"champion: v{result['champion']}" + ("" if result["changed"] else " (unchanged)")
                  + (f" (forced over decision {result['forced_over_decision']})"
                     if "forced_over_decision" in result else ""))
    if result["changed"]:
        _nowcast_for_new_champion(settings.collection)


@app.command()
def rollback(reason: str = typer.Option("operator", help="Recorded with the decision."),
             collection: str = COLLECTION_OPTION) -> None:
    """Put the previous champion back, then nowcast."""
    from fairvalue import lifecycle

    settings = _settings_for(collection)
    try:
        result = lifecycle.operator_rollback(reason, settings, operator=cli_operator())
    except lifecycle.BadReason as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    except (LookupError, lifecycle.ArtifactRefused) as exc:
        refuse(exc, "not rolled back:")
        raise typer.Exit(1) from None
    console.print(f"champion: v{result['champion']} (rolled back from v{result['rolled_back_from']})")
    _nowcast_for_new_champion(settings.collection)


def _nowcast_for_new_champion(collection: str) -> None:
    """After a committed champion change, as the API's promote and rollback: ask for a nowcast,
    and say it was asked for (as `ingest` says its follow-up was sent), or why not."""
    from tasks.app import request_nowcast

    if _send_after_commit("the next scheduled nowcast serves the new champion", request_nowcast, collection):
        console.print("follow-up sent: a nowcast is asked for, to serve the new champion")


@app.command()
def pause(loop: str = typer.Argument(..., help="nowcast, policy, training or monitor"),
          reason: str = typer.Option("", help="Why.")) -> None:
    """Pause a loop: its task skips (and records that it did) until resumed."""
    _set_paused(loop, True, reason)
    console.print(f"{loop} paused")


@app.command()
def resume(loop: str = typer.Argument(..., help="nowcast, policy, training or monitor")) -> None:
    """Resume a paused loop. Resuming training publishes the requests that wait (as the sweep does)."""
    from fairvalue import lifecycle

    _set_paused(loop, False)
    console.print(f"{loop} resumed")
    if loop == lifecycle.TRAINING_LOOP:
        from tasks.lifecycle import publish_training

        ids = lifecycle.requests_to_republish()
        sent = [i for i in ids if _send_after_commit("the training sweep (hourly) publishes it", publish_training, i)]
        if ids:
            console.print(f"published {len(sent)} waiting training request(s): {', '.join(map(str, sent)) or 'none'}")


def _operator() -> str:
    """user@host of whoever runs the CLI (recorded with a pause)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _set_paused(loop: str, paused: bool, reason: str = "") -> None:
    from fairvalue import lifecycle

    try:
        lifecycle.set_paused(loop, paused, reason, by=_operator())
    except ValueError as exc:  # an unknown loop: a usage error, not a traceback
        raise typer.BadParameter(str(exc), param_hint="LOOP") from None


@app.command()
def decisions(limit: int = typer.Option(20, min=1, max=500), collection: str = COLLECTION_OPTION,
              as_json: bool = typer.Option(False, "--json", help="Print the API's read (GET /decisions) as JSON: "
                                                                 "every number of each decision.")) -> None:
    """Promotion decisions and rollbacks, newest first, with the numbers they used."""
    from fairvalue import model_reads
    from fairvalue.errors import NotFound

    settings = _settings_for(collection)
    try:
        read = model_reads.decisions(settings.collection, limit=limit)
    except NotFound as exc:
        refuse(exc)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(read, default=str, allow_nan=False))
        return
    table = Table(title=f"decisions of {settings.collection}")
    # new / old: the contender (or the champion a rollback judged) and the champion (or the previous one)
    for col in ("id", "when", "decision", "by", "new / old", "MAPE new / old", "reason"):
        table.add_column(col, no_wrap=col not in ("by", "reason"))
    for d in read["decisions"]:
        by = f"{d['by']} ({d['operator']})" if d["operator"] else d["by"]
        versions = " / ".join(f"v{d[side]}" if d[side] else "-" for side in ("contender", "champion"))
        table.add_row(str(d["id"]), d["created_at"][:16].replace("T", " "), d["decision"], by,  # to the minute
                      versions, decision_numbers(d["numbers"]), d["reason"][:80])
    console.print(table)
    if read["total"] > len(read["decisions"]):
        console.print(f"{len(read['decisions'])} of {read['total']}: --limit N for more, --json for every number")


def decision_numbers(numbers: dict | None) -> str:
    """The numbers a decision turned on, short enough for a column: the MAPE of the new model
    (the contender, or the champion a rollback judged) / the old one's (champion, previous
    champion) and, in brackets, on how many sales (the gates' window, or the live sales of a
    shadow or rollback). "-" when it used none (an operator's)."""
    numbers = numbers or {}

    def mape(metrics) -> float | None:
        value = metrics.get("mape") if isinstance(metrics, dict) else None
        return value if isinstance(value, int | float) and math.isfinite(value) else None

    if "champion_mape" in numbers or "previous_mape" in numbers:  # the monitor's rollback check
        new, old, n = numbers.get("champion_mape"), numbers.get("previous_mape"), numbers.get("n")
    else:
        contender, champion = numbers.get("contender"), numbers.get("champion")
        new, old = mape(contender), mape(champion)
        n = (contender or {}).get("n") if isinstance(contender, dict) else None
    if new is None and old is None:
        return "-"
    return f"{_mape(new)} / {_mape(old)}" + (f" ({n})" if isinstance(n, int) else "")


def _mape(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command()
def api(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    settings = get_settings()
    uvicorn.run("api.app:app", host=host or settings.api_host, port=port or settings.api_port,
                log_level="info")


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tasks.app", *args]


@app.command()
def worker(
    queue: list[str] = typer.Option(list(queues.GENERAL_WORKER_QUEUES), "--queue", "-Q",
                                    help="Queues to consume (repeat, or separate with commas)."),
    concurrency: int = typer.Option(2),
    name: str = typer.Option(None, "--name", "-n",
                             help="Node name (celery's -n; %h is the host). Default: from the queues, "
                                  "general@%h for the general worker, training@%h for a training one."),
) -> None:
    """Run a Celery worker (use -Q training for a training worker)."""
    consumed = queues.parse_queue_list(queue)
    unknown = [q for q in consumed if q not in queues.ALL]
    if unknown or not consumed:
        raise typer.BadParameter(f"unknown queue(s) {unknown}; known: {list(queues.ALL)}", param_hint="-Q")
    node = name or queues.worker_node_name(consumed)
    os.execv(sys.executable, _celery("worker", "-Q", ",".join(consumed), "-n", node, "-c", str(concurrency),
                                     "--loglevel", "INFO"))


@app.command()
def beat() -> None:
    """Run Celery beat (exactly one per deployment)."""
    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    os.execv(sys.executable, _celery("beat", "--loglevel", "INFO",
                                     "-s", str(settings.var_dir / "celerybeat-schedule")))


UP_STOP_SECONDS = 20.0


def stop_processes(procs: dict[str, subprocess.Popen], timeout: float) -> list[str]:
    """Ask each process to stop (TERM), wait up to `timeout` seconds in all, then kill the ones
    still running (a worker's warm shutdown waits for its training to end). Returns their names."""
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    killed = []
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed.append(name)
    return killed


@app.command()
def up(
    host: str = typer.Option(None), port: int = typer.Option(None),
    once: bool = typer.Option(False, help="Prepare (migrate, seed, train, nowcast) and exit."),
) -> None:
    """Everything on embedded defaults: migrate, seed, train, nowcast, then API + worker + beat."""
    settings = get_settings()
    db_upgrade()
    seed(collection=None)
    # Plain lines, not only a spinner: under a supervisor or in a log nothing else says what the
    # first minutes are spent on.
    if not _has_champion():
        console.print("training the first model on the bundled sales (a few minutes)")
        train(cutoff=None, collection=None)
    console.print("valuing every item (the first nowcast)")
    with console.status("nowcasting"):
        result = startup_nowcast(settings)
    console.print(f"published snapshot {result.snapshot_id} ({result.n_items} items)")
    if once:
        return
    host, port = host or settings.api_host, port or settings.api_port
    procs = {
        "api": subprocess.Popen([sys.executable, "-m", "fairvalue.cli", "api", "--host", host, "--port", str(port)]),
        "worker": subprocess.Popen(_celery("worker", "-Q", ",".join(queues.ALL), "-c", "1", "--pool", "solo",
                                           "--loglevel", "INFO")),
        "beat": subprocess.Popen(_celery("beat", "--loglevel", "INFO", "-s",
                                         str(settings.var_dir / "celerybeat-schedule"))),
    }
    console.print(f"[bold green]fairvalue is up:[/] http://{host}:{port}/v1/items/7804  (Ctrl-C stops)")

    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM while stopping changes nothing
        killed = stop_processes(procs, timeout=UP_STOP_SECONDS)
        if killed:
            errors.print(f"[yellow]stopped; killed {', '.join(killed)}: not stopped within {UP_STOP_SECONDS:g} s "
                         "(a training in progress is retried from its request)[/]")
        raise typer.Exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        errors.print("[red]a process exited; stopping the rest[/]")
        stop()
    except KeyboardInterrupt:
        stop()


def startup_nowcast(settings):
    """`up`'s own nowcast, recorded as a run of the nowcast task (the queue page shows when the
    published snapshot was made, and by whom), so a restart's nowcast is not missing from it."""
    from fairvalue import pipeline
    from storage.runs import recorded_run

    with recorded_run(names.NOWCAST, None, settings.collection) as run:
        run["started_by"] = "fairvalue up"
        result = pipeline.nowcast(settings)
        run.update(result.__dict__)
    return result


def _has_champion() -> bool:
    from fairvalue import pipeline
    from storage.db import session_scope
    from storage.registry import CHAMPION, get_alias

    with session_scope() as session:
        return get_alias(session, pipeline.ensure_collection_of(session, get_settings()), CHAMPION) is not None


@app.command()
def status(collection: str = COLLECTION_OPTION) -> None:
    """What is stored, who is champion, what is published, what was rejected and which stored
    sales the model leaves out (suspected wash trades)."""
    from fairvalue.errors import NotFound
    from fairvalue.status import collection_status

    settings = _settings_for(collection)
    try:  # looked up, not created: the default collection may not exist yet
        s = collection_status(settings.collection)
    except NotFound as exc:
        refuse(exc)
        raise typer.Exit(1) from None
    noun = "daily prices" if s.daily else "sales"
    console.print(f"collection {s.slug}: {s.items} items, {s.rows} {noun}, {s.listings} listing events")
    console.print(f"snapshots: {s.snapshots} stored with {s.snapshot_rows} rows, {s.thinned} of them thinned by "
                  f"retention (past {settings.retention_days:g} days)")
    for reason, n in sorted(s.rejected.items()):
        console.print(f"  rejected {reason}: {n}")
    for reason, n in sorted(s.rejected_listings.items()):
        console.print(f"  rejected listing events, {reason}: {n}")
    for reason, n in sorted(s.kept_out.items()):
        console.print(f"  kept out of the model, {reason}: {n}")
    # Loops are paused for every collection (`fairvalue pause`): a paused one explains a stale value.
    console.print("paused loops: " + (", ".join(s.paused) if s.paused else "none"))
    champion_text = f"v{s.champion.version} (sha256 {s.champion.sha256[:12]})" if s.champion else "none"
    console.print(f"champion: {champion_text}")
    snap = s.published
    if snap is None:
        console.print("published snapshot: none")
        return
    console.print(f"published snapshot: {snap.snapshot_id} as of {snap.as_of.isoformat()}"
                  + (f", items valued at {snap.valued_at.isoformat()} (the market has been silent)"
                     if snap.market_silent else ""))


@cards_app.command("load")
def cards_load(config: Path = typer.Option(None, help="Card universe YAML (default FAIRVALUE_CARDS_CONFIG).",
                                           exists=True, dir_okay=False)) -> None:
    """Validate the card universe and upsert its cards as the collection's items (safe to run again)."""
    from fairvalue.card_universe import CardConfigError, load_configured

    try:
        report = load_configured(path=config)
    except CardConfigError as exc:
        refuse(exc)
        raise typer.Exit(2) from None
    console.print(f"collection {report.collection}: {report.new} new, {report.updated} updated, "
                  f"{report.unchanged} unchanged cards"
                  + (f"; not in the file (kept, inactive): {', '.join(report.not_in_file)}"
                     if report.not_in_file else "")
                  + (f"; newly inactive: {len(report.deactivated)}" if report.deactivated else "")
                  + (f"; first day of trading: {report.first_day or 'none'}" if report.first_day_changed else ""))


# The generated series' bounds: twenty years from a start between these days (pandas holds dates
# until 2262).
MAX_FIXTURE_DAYS = 20 * 366
FIXTURE_FIRST_DAY, FIXTURE_LAST_START = date(1990, 1, 1), date(2200, 1, 1)


@cards_app.command("fixture")
def cards_fixture(
    out: Path = typer.Option(..., help="CSV to write (date, card_id, market_price, volume)."),
    # Bounded so the series' last day stays a date pandas can hold (until 2262) and the seed one
    # numpy takes (a non-negative integer): both were tracebacks.
    days: int = typer.Option(200, min=2, max=MAX_FIXTURE_DAYS), seed: int = typer.Option(7, min=0),
    start: str = typer.Option("2025-01-01"),
    config: Path = typer.Option(None, exists=True, dir_okay=False, help="Card universe YAML."),
    events: Path = typer.Option(None, help="Also write what was injected (regimes, spikes) to this CSV."),
) -> None:
    """Generate the seeded synthetic price series of the card universe (models/cards_fixture.py)."""
    from fairvalue.card_universe import CardConfigError, read_universe
    from models.cards_fixture import generate

    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {start!r}", param_hint="--start") from None
    if not FIXTURE_FIRST_DAY <= first_day <= FIXTURE_LAST_START:
        raise typer.BadParameter(f"{start} is outside {FIXTURE_FIRST_DAY}..{FIXTURE_LAST_START}", param_hint="--start")
    _writable(out, "--out")
    _writable(events, "--events")
    try:
        universe = read_universe(config or get_settings().cards_config)
    except CardConfigError as exc:
        refuse(exc)
        raise typer.Exit(2) from None
    if universe.first_day is not None and first_day < universe.first_day:  # ingest would refuse every price
        raise typer.BadParameter(f"{start} is before the market's first day of trading, {universe.first_day} (the "
                                 "universe's first_day:)", param_hint="--start")
    fixture = generate([(c.id, c.category) for c in universe.cards], days=days, seed=seed, start=start)
    fixture.prices.to_csv(out, index=False)
    if events:
        fixture.events.to_csv(events, index=False)
    console.print(f"wrote {len(fixture.prices)} prices of {len(universe.cards)} cards over {days} days to {out}; "
                  f"injected: {fixture.events['kind'].value_counts().to_dict()}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@app.command()
def quote(
    item_id: str,
    price: float = typer.Argument(..., help="The asked price (a listing, an offer), in the collection's currency."),
    as_json: bool = typer.Option(False, "--json", help="Print the quote as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """An asked price against an item's published value: deviation, signal, place in the band."""
    from fairvalue import item_reads
    from fairvalue.errors import BadInput, NotFound, NotReady

    settings = _settings_for(collection)
    try:
        out = item_reads.quote(settings.collection, item_id, price)
    except (BadInput, NotFound, NotReady) as exc:
        refuse(exc, "no quote:")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    band = ("no band" if out["band_position"] is None else
            f"band {out['band']['p10']:,.2f} - {out['band']['p90']:,.2f}, {out['band_position'].replace('_', ' ')}")
    console.print(f"item {item_id} at {price:,.2f} {out['currency']}: {out['deviation']:+.1%} against the fair value "
                  f"{out['fair_value']:,.2f} ({band}): {out['signal']}; snapshot {out['snapshot']['id']}, "
                  f"model v{out['model_version']}")


@app.command()
def explain(
    item_id: str,
    top: int = typer.Option(5, help="How many drivers (1-30)."),
    comps: int = typer.Option(10, help="How many comparable sales per basis (0-45)."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Why the published fair value of an item is what it is: top drivers and comparable sales."""
    from fairvalue import reads
    from fairvalue.errors import BadInput, NotFound, NotReady

    settings = _settings_for(collection)
    try:  # the API's read: the same checks, errors and rounding
        out = reads.item_explanation(settings.collection, item_id, top, comps)
    except BadInput as exc:
        raise typer.BadParameter(str(exc)) from None
    except (NotFound, NotReady) as exc:
        refuse(exc)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if "valued_day" in out:  # a daily-priced collection (cards): models/daily.py's method, not drivers
        _print_daily_explanation(item_id, out)
        return
    console.print(f"item {item_id}: fair value {out['fair_value']:.2f} {out['currency']} "
                  f"(typical item now {out['typical_value']:.2f}, floor {out['floor']:.2f}; "
                  f"snapshot {out['snapshot_id']}, model v{out['model_version']})")
    _print_if_not_published(out)
    table = Table(title="drivers vs a typical item")
    for col in ("group", "effect"):
        table.add_column(col)
    for d in out["drivers"]:
        table.add_row(d["group"], f"{d['effect_pct']:+.1f}%")  # effect_pct is in percent already
    # What the rows above leave out (the other drivers and the trees' interactions), so that the
    # typical item's value times every row is the fair value.
    rest = math.log(out["fair_value"] / out["typical_value"]) - sum(d["effect"] for d in out["drivers"])
    table.add_row("the other drivers and interactions", f"{math.expm1(rest) * 100:+.1f}%")
    console.print(table)
    table = Table(title="comparable sales")
    for col in ("basis", "item", "when", "price", "vs market"):
        table.add_column(col)
    for c in out["comparable_sales"]:
        table.add_row(c["basis"], c["item_id"], c["timestamp"][:16], f"{c['price']:.2f}",
                      "-" if c["premium_over_market"] is None else f"{c['premium_over_market']:+.0%}")
    console.print(table)


def _print_if_not_published(out: dict) -> None:
    if out.get("matches_published") is False:
        console.print(f"[yellow]the published value is {out['published_fair_value']:.2f}: this explanation "
                      "read data that changed since the snapshot (docs/architecture.md)[/yellow]")


def _print_daily_explanation(item_id: str, out: dict) -> None:
    window, move = out["window_prices"], out.get("category_index_move_over_window")
    # No deviation: the price is older than FAIRVALUE_SIGNAL_MAX_AGE_DAYS at the moment valued (no signal).
    deviation = "too old to signal" if out["deviation"] is None else f"{out['deviation']:+.1%}"
    console.print(f"card {item_id}: fair value {out['fair_value']:.2f} {out['currency']} for {out['valued_day']} "
                  f"(band {out['p10']:.2f} .. {out['p90']:.2f}); market price {out['market_price']:.2f} "
                  f"({deviation}); snapshot {out['snapshot_id']}, model v{out['model_version']}")
    console.print(f"method: {out['method']}")
    if window["n"]:
        console.print(f"window: {window['n']} daily prices from {window['first_day']}, median {window['median']:.2f}"
                      + ("" if move is None else f"; {out['category']} index moved {move:+.1%} over it"))
    _print_if_not_published(out)


@tokens_app.command("create")
def tokens_create(name: str = typer.Option(..., help="Who or what the token is for, e.g. alice or ci.")) -> None:
    """Create an operator token and print it ONCE (only its sha256 is stored)."""
    from storage import tokens
    from storage.db import session_scope

    try:
        with session_scope() as session:
            token = tokens.create(session, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--name") from None
    # The notice on stderr, so `TOKEN=$(fairvalue tokens create --name ci)` captures the token alone.
    typer.echo(f"token {name!r} created; it is shown only now:", err=True)
    print(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """Tokens by name with when they were created, last used and revoked (never the tokens)."""
    from storage import tokens
    from storage.db import session_scope

    table = Table(title="operator tokens")
    for col in ("name", "created", "last used", "revoked"):
        table.add_column(col)
    with session_scope() as session:
        for t in tokens.list_all(session):
            table.add_row(t.name, *(ts.isoformat(timespec="seconds") if ts else "-"
                                    for ts in (t.created_at, t.last_used_at, t.revoked_at)))
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from storage import tokens
    from storage.db import session_scope

    with session_scope() as session:
        revoked = tokens.revoke(session, name)
    if not revoked:
        console.print(f"no active token named {name!r}", style="red")
        raise typer.Exit(1)
    console.print(f"token {name!r} revoked")


def main() -> None:
    """The `fairvalue` command. A database it cannot reach, or one without the schema, is an
    operator's setup step, so it gets one line saying which, not a traceback."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        app()
    except (OperationalError, ProgrammingError) as exc:
        database = _redact(get_settings().resolved_database_url())
        if _is_missing_table(exc):
            _exit_with(f"the database {database} has no fairvalue schema ({_first_line(exc)}): "
                       "run `fairvalue db upgrade` first")
        if isinstance(exc, OperationalError):
            unmade = _sqlite_file_not_made(get_settings().resolved_database_url())
            settings = get_settings()  # the embedded database's folder is relative to where the command runs
            where = (f" (FAIRVALUE_VAR_DIR {settings.var_dir} is read from the current directory)"
                     if unmade and not settings.database_url and not settings.var_dir.is_absolute() else "")
            _exit_with(f"cannot reach the database {database}: {_first_line(exc)}"
                       + (f"; it was never created{where}: run `fairvalue db upgrade` (or `./run up`) first"
                          if unmade else ""))
        raise


def _sqlite_file_not_made(url: str) -> bool:
    """A SQLite URL whose file does not exist: a fresh checkout before its first upgrade."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and bool(parsed.database) and parsed.database != ":memory:" \
        and not Path(parsed.database).exists()


def _is_missing_table(exc: Exception) -> bool:
    """PostgreSQL says so by SQLSTATE 42P01; SQLite only in words."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or str(orig).startswith("no such table")


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _exit_with(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(message, style="red", markup=False, highlight=False)
    sys.exit(2)


if __name__ == "__main__":
    main()
