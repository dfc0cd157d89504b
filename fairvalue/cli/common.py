"""What every group of commands shares: the consoles (stdout, and stderr for what went wrong),
`refuse`, the --collection option and the checks of arguments made before any work (a known
collection, an ISO time, a writable output file), and the follow-up message sent after a commit."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from fairvalue.settings import Settings, get_settings

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    # Piped or redirected, rich assumes 80 columns and cuts a wide table's figures ("MAPE 14.6…"); a
    # file has no width, so give tables room (COLUMNS still decides when set).
    console.width = 200
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


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from models.validation import parse_timestamp

    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError) as exc:  # not ISO 8601, before 1970, or past datetime's range
        raise typer.BadParameter(f"{value!r} is not a usable ISO 8601 time ({exc})") from None


def settings_for(collection: str | None) -> Settings:
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


def writable(path: Path | None, option: str) -> Path | None:
    """An output file's folder must exist and take files before any work: a replay of a quarter
    took minutes and then failed to write its export."""
    if path is None:
        return None
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise typer.BadParameter(f"cannot write {path}: it is a folder, or its folder does not exist or takes no "
                                 "files", param_hint=option)
    return path


def send_follow_up(then: str, send, *args, **kwargs) -> bool:
    """Send the message that follows a committed change; say so when it could not be sent."""
    from tasks.app import send_after_commit

    why = send_after_commit(send, *args, **kwargs)
    if why is not None:
        console.print(f"[yellow]not sent ({why}); {then}[/]")
    return why is None


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
