"""Running the service: `db upgrade`, the processes (`api`, `worker`, `beat`, and `up`, which
prepares and supervises all three on embedded defaults) and their loops (`pause`, `resume`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import typer

from fairvalue.answers import iso
from fairvalue.cli.common import console, errors, redact, refuse, send_follow_up
from fairvalue.cli.market import seed
from fairvalue.cli.snapshots import recorded_nowcast
from fairvalue.cli.training import train_first_model
from fairvalue.settings import get_settings
from tasks import queues


def db_upgrade() -> None:
    """Create or migrate the schema to the latest revision."""
    from storage.migrate import upgrade

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade()
    console.print(f"database at head: {redact(settings.resolved_database_url())}")


def api(host: str = typer.Option(None, help="Address to listen on (default: FAIRVALUE_API_HOST, 127.0.0.1: "
                                             "this machine only; 0.0.0.0 for every interface)."),
        port: int = typer.Option(None, min=1, max=65535, help="Port (default: FAIRVALUE_API_PORT, 8000).")) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    settings = get_settings()
    problems = settings.insecure_secrets()
    if problems:  # the app refuses them too (api.app), but there as a traceback from uvicorn's startup
        refuse("; ".join(problems), "refusing to start:")
        raise typer.Exit(2)
    uvicorn.run("api.app:app", host=host or settings.api_host, port=port or settings.api_port,
                log_level="info")


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tasks.app", *args]


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


def up(
    host: str = typer.Option(None), port: int = typer.Option(None, min=1, max=65535),
    once: bool = typer.Option(False, help="Prepare (migrate, seed, train, nowcast) and exit."),
) -> None:
    """Everything on embedded defaults: migrate, seed, train, nowcast, then API + worker + beat."""
    from fairvalue import pipeline

    settings = get_settings()
    db_upgrade()
    seed(collection=None)
    # Plain lines, not only a spinner: under a supervisor or in a log nothing else says what the
    # first minutes are spent on.
    if not pipeline.has_champion(settings):
        console.print("training the first model on the bundled sales (a few minutes)")
        train_first_model(settings)
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
    return recorded_nowcast(settings, "fairvalue up")


def pause(loop: str = typer.Argument(..., help="nowcast, policy, training or monitor"),
          reason: str = typer.Option("", help="Why.")) -> None:
    """Pause a loop: its task skips (and records that it did) until resumed."""
    kept = _set_paused(loop, True, reason)
    if kept is None:
        console.print(f"{loop} paused")
    else:
        console.print(f"{loop} was already paused, since {iso(kept.updated_at)}"
                      + (f" by {kept.changed_by}" if kept.changed_by else "")
                      + (f": {kept.reason}" if kept.reason else "") + " (kept as it was)", markup=False)


def resume(loop: str = typer.Argument(..., help="nowcast, policy, training or monitor")) -> None:
    """Resume a paused loop. Resuming training publishes what the sweep does: the requests that wait,
    and those still in a retry's backoff for when it ends."""
    from fairvalue import lifecycle

    console.print(f"{loop} resumed" if _set_paused(loop, False) is None else f"{loop} was not paused")
    if loop == lifecycle.TRAINING_LOOP:
        from tasks.lifecycle import publish_training

        waiting = lifecycle.requests_to_publish()
        sent = [_due(request_id, countdown) for request_id, countdown in waiting
                if send_follow_up("the training sweep (hourly) publishes it", publish_training, request_id,
                                  countdown=countdown)]
        if waiting:
            console.print(f"published {len(sent)} waiting training request(s): {', '.join(sent) or 'none'}")


def _due(request_id: int, countdown: float | None) -> str:
    """A published request as resume lists it: one still in its retry's backoff says when it is due."""
    if countdown is None:
        return str(request_id)
    return f"{request_id} (due in {countdown:.0f} s, as its retry's backoff ends)"


def _operator() -> str:
    """user@host of whoever runs the CLI (recorded with a pause)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _set_paused(loop: str, paused: bool, reason: str = ""):
    from fairvalue import lifecycle

    try:
        return lifecycle.set_paused(loop, paused, reason, by=_operator())
    except lifecycle.BadReason as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    except ValueError as exc:  # an unknown loop: a usage error, not a traceback
        raise typer.BadParameter(str(exc), param_hint="LOOP") from None
