"""The `fairvalue` command: operators' entry point to every job.

This file builds the command tree: the typer app, its groups, and every command registered in
the order `fairvalue --help` lists them. Each command is a plain function in the module of its job:

| module          | commands                                                                 |
| --------------- | ------------------------------------------------------------------------ |
| `market.py`     | seed; ingest sales, ingest listings, ingest prices                       |
| `cards.py`      | cards load, cards fixture, cards collect                                 |
| `training.py`   | train, drift, retrain, promote, rollback, decisions                      |
| `snapshots.py`  | nowcast, archive                                                         |
| `replays.py`    | replay, backtest                                                         |
| `running.py`    | db upgrade; api, worker, beat, up; pause, resume                         |
| `inspection.py` | status, quote, explain                                                   |
| `tokens.py`     | tokens create, tokens list, tokens revoke                                |
| `common.py`     | what they share: consoles, `refuse`, --collection, argument checks       |

`main` (below) is the console script (pyproject.toml's [project.scripts]); `python -m
fairvalue.cli` runs it too (`__main__.py`). The commands do their work through plain functions
in fairvalue/, models/ and storage/: here are only arguments, refusals and what is printed."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from fairvalue.cli import cards, inspection, market, replays, running, snapshots, tokens, training
from fairvalue.cli.common import redact
from fairvalue.settings import get_settings

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

# The help lists the commands in the order they are registered, then the groups.
app.command()(market.seed)
app.command()(training.train)
app.command()(training.drift)
app.command()(snapshots.nowcast)
app.command()(snapshots.archive)
app.command()(replays.replay)
app.command()(replays.backtest)
app.command()(training.retrain)
app.command("promote")(training.promote_cmd)
app.command()(training.rollback)
app.command()(running.pause)
app.command()(running.resume)
app.command()(training.decisions)
app.command()(running.api)
app.command()(running.worker)
app.command()(running.beat)
app.command()(running.up)
app.command()(inspection.status)
app.command()(inspection.quote)
app.command()(inspection.explain)

db_app.command("upgrade")(running.db_upgrade)

ingest_app.command("sales")(market.ingest_sales)
ingest_app.command("listings")(market.ingest_listings)
ingest_app.command("prices")(market.ingest_prices)

tokens_app.command("create")(tokens.tokens_create)
tokens_app.command("list")(tokens.tokens_list)
tokens_app.command("revoke")(tokens.tokens_revoke)

cards_app.command("collect")(cards.cards_collect)
cards_app.command("load")(cards.cards_load)
cards_app.command("fixture")(cards.cards_fixture)


def main() -> None:
    """The `fairvalue` command. A database it cannot reach, or one without the schema, is an
    operator's setup step, so it gets one line saying which, not a traceback."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from storage.artifacts import ArtifactError

    try:
        app()
    except ArtifactError as exc:  # the store is down, missing its bucket, or refusing: the service refused
        _exit_with(f"the artifact store refused: {exc}", code=1)
    except (OperationalError, ProgrammingError) as exc:
        database = redact(get_settings().resolved_database_url())
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


def _exit_with(message: str, code: int = 2) -> None:
    Console(stderr=True, soft_wrap=True).print(message, style="red", markup=False, highlight=False)
    sys.exit(code)
