"""Models and their lifecycle: `train`, `drift`, `retrain` (a training request for the workers),
`promote` and `rollback` (operator decisions, then a nowcast) and `decisions` (the decision trail)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from fairvalue.cli.common import COLLECTION_OPTION, console, parse_time, refuse, send_follow_up, settings_for, writable
from tasks import queues


def train(cutoff: str = typer.Option(None, help="Train only on sales before this ISO time."),
          collection: str = COLLECTION_OPTION) -> None:
    """Train a model version on the stored sales and register it (the first becomes champion)."""
    result = _train_or_exit(settings_for(collection), parse_time(cutoff))
    console.print(f"registered version {result.version}" + (" (champion)" if result.became_champion else ""))
    console.print_json(json.dumps(result.metrics, default=str))
    _print_diagnostics(result)


def train_first_model(settings) -> None:
    """`up`'s first training, said in a line rather than `train`'s page of numbers (the version's
    page, /models and the diagnostics hold them)."""
    result = _train_or_exit(settings, None)
    model, floor = result.metrics.get("model") or {}, result.metrics.get("floor_baseline") or {}
    scored = ""
    if model.get("mape") is not None and floor.get("mape") is not None:
        scored = (f": forward MAPE {100 * model['mape']:.1f} % on {model['n']} sales from "
                  f"{result.metrics['holdout_start'][:10]}, the previous day's floor {100 * floor['mape']:.1f} %")
    console.print(f"registered version {result.version}" + (" (champion)" if result.became_champion else "") + scored)
    _print_diagnostics(result)


def _train_or_exit(settings, cutoff):
    from fairvalue import pipeline

    try:
        with console.status("training"):
            return pipeline.train(settings, cutoff=cutoff)
    except pipeline.TRAINING_REFUSALS as exc:  # no prices, or too few: what the data refused
        refuse(exc, "nothing trained:")
        raise typer.Exit(1) from None


def _print_diagnostics(result) -> None:
    if result.diagnostics_uri:
        console.print(f"diagnostics: {result.diagnostics_uri}", soft_wrap=True)  # a URI to copy whole


def drift(
    days: int = typer.Option(30, help="The recent window: this many days up to the latest sale.", min=1),
    out: Path = typer.Option(None, help="Also write the HTML report here.", callback=lambda p: writable(p, "--out")),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Feature and prediction drift: the champion's training window vs the recent window."""
    from fairvalue import pipeline
    from fairvalue.errors import NotFound

    settings = settings_for(collection)
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


def cli_operator() -> str:
    """Who acted, for the decision trail: the CLI has no token, so the login of the shell that ran
    it ("cli:alice"), as an API call records its token's name."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container's numeric uid): the CLI still acted
        return "cli"


def _parse_params(params: list[str] | None) -> dict:
    """KEY=VALUE pairs, each VALUE read as JSON when it is (a number, true, a list) and else as its
    text, which check_training_params then names if the parameter takes no text. Read as a webhook's
    body is (models.json_input): json.loads' ValueError of a 5,000-digit number was a traceback."""
    from models.json_input import BadJson, loads

    out = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE")
        try:
            out[key] = loads(value, "the value")
        except BadJson:
            out[key] = value
    return out


def retrain(
    reason: str = typer.Option(..., help="Why (kept with the request)."),
    param: list[str] = typer.Option(None, "--param", help="Training parameter override KEY=VALUE (repeat)."),
    collection: str = COLLECTION_OPTION,
) -> None:
    """Record a training request and publish it to the training queue."""
    from fairvalue import lifecycle
    from tasks.lifecycle import request_training

    settings = settings_for(collection)
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


def promote_cmd(version: int = typer.Argument(..., help="Model version number."),
                reason: str = typer.Option("operator", help="Recorded with the decision."),
                force: bool = typer.Option(False, "--force", help="Promote a version the gates rejected or the "
                                           "monitor rolled back (the override is recorded with the decision)."),
                collection: str = COLLECTION_OPTION) -> None:
    """Make a model version the champion (recorded as an operator decision), then nowcast. A version
    the gates rejected or the monitor rolled back is refused unless --force."""
    from fairvalue import lifecycle

    if not 1 <= version <= lifecycle.MAX_VERSION:  # as the API's promote refuses it: no version is numbered so
        raise typer.BadParameter(f"a model version is 1 to {lifecycle.MAX_VERSION:,}, got {version}",
                                 param_hint="VERSION")
    settings = settings_for(collection)
    try:
        result = lifecycle.operator_promote(version, reason, settings, operator=cli_operator(), force=force)
    except lifecycle.BadReason as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    except lifecycle.RejectedByGates as exc:
        refuse(f"{str(exc).rstrip('.')}; pass --force to promote it anyway", "not promoted:")
        raise typer.Exit(1) from None
    except (LookupError, lifecycle.ArtifactRefused) as exc:
        refuse(exc, "not promoted:")
        raise typer.Exit(1) from None
    console.print(f"champion: v{result['champion']}" + ("" if result["changed"] else " (unchanged)")
                  + (f" (forced over decision {result['forced_over_decision']})"
                     if "forced_over_decision" in result else ""))
    if result["changed"]:
        _nowcast_for_new_champion(settings.collection)


def rollback(reason: str = typer.Option("operator", help="Recorded with the decision."),
             collection: str = COLLECTION_OPTION) -> None:
    """Put the previous champion back, then nowcast."""
    from fairvalue import lifecycle

    settings = settings_for(collection)
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

    if send_follow_up("the next scheduled nowcast serves the new champion", request_nowcast, collection):
        console.print("follow-up sent: a nowcast is asked for, to serve the new champion")


def decisions(limit: int = typer.Option(20, min=1, max=500), collection: str = COLLECTION_OPTION,
              as_json: bool = typer.Option(False, "--json", help="Print the API's read (GET /decisions) as JSON: "
                                                                 "every number of each decision.")) -> None:
    """Promotion decisions and rollbacks, newest first, with the numbers they used."""
    from fairvalue import model_reads
    from fairvalue.errors import NotFound

    settings = settings_for(collection)
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
