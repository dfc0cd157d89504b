"""Market data in: `seed` (the bundled market) and `ingest sales | listings | prices` (files),
each followed by the nowcast request a webhook would send."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from fairvalue.cli.common import COLLECTION_OPTION, console, refuse, send_follow_up, settings_for
from tasks import names


def seed(collection: str = COLLECTION_OPTION) -> None:
    """Load the bundled market (items, floor, ETH/USD, sales). Safe to run again."""
    from fairvalue import pipeline
    from storage.bundled import UnreadableFile, read_sales_file

    settings = settings_for(collection)  # a mistyped slug is refused here
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


def ingest_sales(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or JSON lines"),
                 collection: str = COLLECTION_OPTION) -> None:
    """Validate and store sales from a file; rejected rows are kept with their reason."""
    from fairvalue import pipeline

    _ingest_events(path, collection, pipeline.ingest_file, "sales", names.AFTER_SALES,
                   "a nowcast is asked for when enough sales are new",
                   "the next scheduled nowcast includes these sales")


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

    settings = settings_for(collection)
    try:
        pipeline.check_takes_sales(settings.collection)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(path.name, total=None)
            report = ingest(path, settings, progress=lambda n: progress.advance(task, n))
    except (pipeline.CannotTakeSales, UnreadableFile) as exc:  # before any row is stored
        refuse(exc, f"{path.name} not ingested:")
        raise typer.Exit(2) from None
    _print_report(f"ingest {path.name} into {settings.collection}", report, noun=noun)
    if report.accepted and _has_champion_or_say(settings):
        from tasks.app import app as celery_app

        if send_follow_up(otherwise, celery_app.send_task, follow_up, args=[report.accepted],
                              kwargs={"collection": settings.collection}):
            console.print(f"follow-up sent: {sent}")


# The follow-up of stored prices, as the collector's task asks for it (tasks/cards.py): any new or
# changed price is a card-day the published snapshot has not valued.
PRICES_SENT = "a nowcast is asked for to value the new prices"
PRICES_OTHERWISE = "the next scheduled nowcast values these prices"


def ingest_prices(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: date, card_id, market_price[, volume]"),
    collection: str = typer.Option("cards", "--collection", help="A daily-priced collection."),
) -> None:
    """Validate and upsert daily card prices from a CSV; rejected rows are kept with their reason."""
    from fairvalue.card_prices import ingest_prices_file
    from storage.bundled import UnreadableFile

    settings = settings_for(collection)
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
    if report.stored and _has_champion_or_say(settings):
        from tasks.app import request_nowcast

        if send_follow_up(PRICES_OTHERWISE, request_nowcast, settings.collection):
            console.print(f"follow-up sent: {PRICES_SENT}")


def _has_champion_or_say(settings) -> bool:
    """A follow-up nowcast has a model to value with; else say what comes first (the rows are kept)."""
    from fairvalue import pipeline

    if pipeline.has_champion(settings):
        return True
    slug = settings.collection
    console.print(f"no nowcast asked for: {slug} has no champion yet; `fairvalue train --collection {slug}` "
                  f"trains one, then `fairvalue nowcast --collection {slug}` values what is stored")
    return False


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
