"""Evaluation on past data: `replay` (forward accuracy of the live loop over a past window) and
`backtest` (trading on its signals vs baselines), for sale-by-sale and daily-priced collections."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from fairvalue.cli.common import COLLECTION_OPTION, console, errors, parse_time, refuse, settings_for, writable
from fairvalue.errors import NotFound
from fairvalue.settings import get_settings

_FILE = dict(exists=True, dir_okay=False)


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
                                callback=lambda p: writable(p, "--export")),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    collection: str = COLLECTION_OPTION,
    horizon: float = typer.Option(None, help="Daily markets: signal horizon in whole days (1-90)."),
    gain: float = typer.Option(None, help="Daily markets: the move that makes a BUY/SELL right, e.g. 0.05 "
                               "(above 0, under 1)."),
) -> None:
    """Step the live loop through a past period and score each sale against the last nowcast
    published before it (for a daily-priced collection: every card-day, with its KPIs)."""
    collection = settings_for(collection).collection  # a mistyped slug is refused before any work; the default named
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
    """The card-days replay KPIs of docs/cards.md (models/daily_eval.py), printed or as JSON."""
    from fairvalue import evaluation

    if horizon is not None and not 1 <= horizon <= 90:
        raise typer.BadParameter("--horizon must be between 1 and 90 days")
    if horizon is not None and not float(horizon).is_integer():  # 1.9 was read as 1 day, unsaid
        raise typer.BadParameter(f"must be a whole number of days (1-90), got {horizon:g}", param_hint="--horizon")
    if gain is not None and not 0 < gain < 1:  # a fall of 100 % or more is no move a price can make
        raise typer.BadParameter("--gain must be above 0 and under 1, e.g. 0.05 for 5 %", param_hint="--gain")
    report = _on_daily_series(collection, from_, to, source, lambda series, start, end, settings:
                              evaluation.evaluate_daily(series, start, end, settings, horizon, gain))
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


def backtest(
    from_: str = typer.Option(..., "--from", help="First moment replayed."),
    to: str = typer.Option(..., "--to", help="End of the replay (exclusive)."),
    cadence: str = typer.Option("1d", help="How often a nowcast is published: 1d or 30m."),
    source: str = typer.Option("auto", help="auto, db or bundled."),
    as_json: bool = typer.Option(False, "--json", help="Print the strategies' figures as JSON."),
    export: Path = typer.Option(None, help="Write every eligible pair with its entry, exit and return to "
                                "this CSV (docs/backtest.md).", callback=lambda p: writable(p, "--export")),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Replay, then trade: buy what the model calls undervalued vs buy every completed sale vs buy
    what is under the week's median sale, without the model (docs/backtest.md) (for a
    daily-priced collection: hold each day the cards it calls undervalued vs every priced card)."""
    collection = settings_for(collection).collection  # a mistyped slug is refused before any work; the default named
    if _is_daily(collection):
        if export is not None:
            raise typer.BadParameter("the pairs are a collection of unique items' (sales); a daily-priced "
                                     "collection's card-days are in `replay --collection ... --json`",
                                     param_hint="--export")
        if cadence != "1d":  # silently ignored before, even a value no collection takes
            raise typer.BadParameter("a daily-priced collection is valued once a day; it takes no --cadence",
                                     param_hint="--cadence")
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
    start = pd.Timestamp(parse_time(from_)).tz_convert("UTC").tz_localize(None)
    end = pd.Timestamp(parse_time(to)).tz_convert("UTC").tz_localize(None)
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    settings = get_settings().for_collection(collection)  # checked by the command (settings_for)
    try:
        data = evaluation.load_market(settings, source, list(sales or []), floor, eth_usd, list(listings or []))
    except (UnreadableFile, BadMarketFile) as exc:  # an events or market file refused whole: its path, line, problem
        refuse(exc, "nothing replayed:")
        raise typer.Exit(2) from None
    except NotFound as exc:  # --source db, and the collection is not stored
        refuse(exc, "nothing replayed:")
        raise typer.Exit(1) from None
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


def _day_window(from_: str, to: str):
    """--from and --to of a daily-priced collection as whole UTC days (naive midnights): every day
    the window touches, as /performance and /backtest read it (fairvalue.track_record._daily_window).
    A --to inside a day takes that day in; a bare date --to (midnight) stays exclusive, as --help says."""
    import pandas as pd

    start = pd.Timestamp(parse_time(from_)).tz_convert("UTC").tz_localize(None).normalize()
    end = pd.Timestamp(parse_time(to)).tz_convert("UTC").tz_localize(None).ceil("D")
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

    return _on_daily_series(collection, from_, to, source, evaluation.backtest_daily)


def _on_daily_series(collection: str, from_: str, to: str, source: str, run) -> dict:
    """`run(series, start, end, settings)` on a daily-priced collection's prices over the window,
    after the checks both daily commands make; too little history before it is a bad --from."""
    from fairvalue import evaluation

    start, end = _day_window(from_, to)
    _check_source(source)
    settings = get_settings().for_collection(collection)  # checked by the command (settings_for)
    with console.status("replaying"):
        try:
            series = evaluation.load_daily(settings, source)
        except NotFound as exc:  # --source db, and the collection is not stored
            refuse(exc, "nothing replayed:")
            raise typer.Exit(1) from None
        _check_days_hold_prices(series, start, end)
        try:
            return run(series, start, end, settings)
        except evaluation.NotEnoughHistory as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None
