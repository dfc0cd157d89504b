"""Published values: `nowcast` (value every item and publish the snapshot) and `archive` (the
snapshots a store outage left without an archive, then retention)."""

from __future__ import annotations

import typer

from fairvalue.cli.common import COLLECTION_OPTION, console, errors, parse_time, refuse, settings_for


def nowcast(as_of: str = typer.Option(None, help="Value at this ISO time instead of now."),
            collection: str = COLLECTION_OPTION) -> None:
    """Value every item with the champion and publish the snapshot."""
    from fairvalue import pipeline
    from fairvalue.errors import NotFound
    from fairvalue.lifecycle.loops import NOWCAST_LOOP, is_paused

    settings = settings_for(collection)
    try:
        with console.status("nowcasting"):
            result = recorded_nowcast(settings, "fairvalue nowcast", as_of=parse_time(as_of))
    except pipeline.FutureAsOf as exc:  # input refused before any work (README): exit 2
        refuse(exc, "nothing published:")
        raise typer.Exit(2) from None
    except (NotFound, pipeline.NoChampion, pipeline.NothingToValue) as exc:  # nothing to value yet, or an
        # --as-of before the market's first input
        refuse(exc, "nothing published:")
        raise typer.Exit(1) from None
    console.print(
        f"snapshot {result.snapshot_id}: {result.n_items} items, model v{result.model_version}, "
        f"{'published' if result.published else 'not published (a later snapshot is)'}; "
        f"archive: {result.archive_uri or result.archive_error}", soft_wrap=True,
    )
    if is_paused(NOWCAST_LOOP):  # asked by hand, it runs; the operator may have paused to stop publishing
        errors.print("note: the nowcast loop is paused: its scheduled runs skip, this one was asked for by hand "
                     "(`fairvalue resume nowcast` resumes the loop)", style="yellow", markup=False)


def recorded_nowcast(settings, started_by: str, as_of=None):
    """A nowcast a command runs (`nowcast`, `up`'s first), recorded as a run of the nowcast task, so
    the queue page and GET /v1/queue show the last nowcast whoever ran it: a worker's failed or
    skipped run stayed "the last" after a command had published. What the input or the data refused
    (pipeline.NOWCAST_REFUSALS) is recorded skipped, with why, and raised for the command to say."""
    from fairvalue import pipeline
    from storage.runs import SKIPPED, recorded_run
    from tasks import names

    pipeline.check_stored(settings)  # NotFound first: a mistyped slug leaves no run behind
    refused = None
    with recorded_run(names.NOWCAST, None, settings.collection) as run:
        run["started_by"] = started_by
        try:
            result = pipeline.nowcast(settings, as_of=as_of)
        except pipeline.NOWCAST_REFUSALS as exc:
            run.update(status=SKIPPED, reason=str(exc))
            refused = exc
        else:
            run.update(result.__dict__)
    if refused is not None:
        raise refused
    return result


def archive(limit: int = typer.Option(20, help="Archive at most this many snapshots.", min=1),
            collection: str = COLLECTION_OPTION) -> None:
    """Archive published snapshots a store outage left without an archive, then thin what is older
    than FAIRVALUE_RETENTION_DAYS and prune the webhook deliveries and task runs older than
    FAIRVALUE_AUDIT_RETENTION_DAYS (beat does both hourly)."""
    from fairvalue import pipeline

    settings = settings_for(collection)
    report = pipeline.archive_pending(settings, limit=limit)
    for snapshot_id, uri in report.archived.items():
        console.print(f"snapshot {snapshot_id}: archived to {uri}")
    for snapshot_id, error in report.failed.items():
        refuse(error, f"snapshot {snapshot_id}: not archived:")
    console.print(f"{report.pending} snapshot(s) still without an archive")
    thinned = pipeline.apply_retention(settings)  # only archived snapshots are thinned: it runs whatever the store said
    console.print(f"retention: {thinned.snapshots_thinned} snapshot(s) thinned ({thinned.rows_deleted} rows), "
                  f"{thinned.listing_events_deleted} replaced listing event(s) dropped, "
                  f"{thinned.webhook_deliveries_deleted} webhook delivery record(s), "
                  f"{thinned.task_runs_deleted} task run(s) and {thinned.dropped_listings_forgotten} "
                  "dropped listing id(s) pruned", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
