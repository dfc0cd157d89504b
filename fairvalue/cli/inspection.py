"""Reading what is published: `status` (counts, champion, snapshot, paused loops), `quote` (an
asked price against an item's value) and `explain` (why an item's value is what it is)."""

from __future__ import annotations

import json
import math

import typer
from rich.table import Table

from fairvalue.cli.common import COLLECTION_OPTION, console, refuse, settings_for


def status(collection: str = COLLECTION_OPTION) -> None:
    """What is stored, who is champion, what is published, what was rejected and which stored
    sales the model leaves out (suspected wash trades)."""
    from fairvalue.errors import NotFound
    from fairvalue.status import collection_status

    settings = settings_for(collection)
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


def quote(
    item_id: str,
    price: float = typer.Argument(..., help="The asked price (a listing, an offer), in the collection's currency."),
    as_json: bool = typer.Option(False, "--json", help="Print the quote as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """An asked price against an item's published value: deviation, signal, place in the band."""
    from fairvalue import item_reads
    from fairvalue.errors import BadInput, NotFound, NotReady

    settings = settings_for(collection)
    try:
        out = item_reads.quote(settings.collection, item_id, price)
    except BadInput as exc:  # a price or id no quote takes: refused before any work (README)
        refuse(exc, "no quote:")
        raise typer.Exit(2) from None
    except (NotFound, NotReady) as exc:
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


def explain(
    item_id: str,
    top: int = typer.Option(5, help="How many drivers (1-30)."),
    comps: int = typer.Option(10, help="How many comparable sales per basis (0-45)."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Why the published fair value of an item is what it is: top drivers and comparable sales."""
    from fairvalue import reads
    from fairvalue.errors import BadInput, Lost, NotFound, NotReady

    settings = settings_for(collection)
    try:  # the API's read: the same checks, errors and rounding
        out = reads.item_explanation(settings.collection, item_id, top, comps)
    except BadInput as exc:
        raise typer.BadParameter(str(exc)) from None
    except (NotFound, NotReady, Lost) as exc:
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
