"""Trading cards: `cards load` (the card universe from YAML), `cards fixture` (a seeded synthetic
price series) and `cards collect` (the daily price collection, run now)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer

from fairvalue.cli.common import console, refuse, settings_for, writable
from fairvalue.cli.market import PRICES_OTHERWISE, PRICES_SENT
from fairvalue.settings import get_settings


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
    writable(out, "--out")
    writable(events, "--events")
    try:
        universe = read_universe(config or get_settings().cards_config)
    except CardConfigError as exc:
        refuse(exc)
        raise typer.Exit(2) from None
    if universe.first_day is not None and first_day < universe.first_day:  # ingest would refuse every price
        raise typer.BadParameter(f"{start} is before the market's first day of trading, {universe.first_day} (the "
                                 "card file's first_day)", param_hint="--start")
    fixture = generate([(c.id, c.category) for c in universe.cards], days=days, seed=seed, start=start)
    fixture.prices.to_csv(out, index=False)
    if events:
        fixture.events.to_csv(events, index=False)
    console.print(f"wrote {len(fixture.prices)} prices of {len(universe.cards)} cards over {days} days to {out}; "
                  f"injected: {fixture.events['kind'].value_counts().to_dict()}")


def cards_collect(collection: str = typer.Option("cards", "--collection"),
                  days: int = typer.Option(None, min=1, max=3650,
                                           help="Days of history per card (default from settings).")) -> None:
    """Fetch the active cards' prices from the price API now (what the daily beat task does), then
    ask for a nowcast when any price is new or changed (`follow_up` in the answer). Exit 1 when
    nothing was collected: the run was skipped or every card asked for failed."""
    from fairvalue.card_prices import collect
    from tasks.app import request_nowcast, send_after_commit

    settings = settings_for(collection)
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
    # The service could not do what was asked (README: exit 1), though the answer above says why;
    # some cards failing is a collection all the same, its failures named per card.
    if report.skipped:
        refuse(report.skipped, "nothing collected:")
        raise typer.Exit(1)
    if report.cards and len(report.cards_failed) >= report.cards:
        refuse(f"every card asked for failed ({report.cards}; reasons in cards_failed)", "nothing collected:")
        raise typer.Exit(1)
