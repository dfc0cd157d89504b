"""Operators' API tokens: `tokens create | list | revoke` (stored hashed)."""

from __future__ import annotations

import typer
from rich.table import Table

from fairvalue.cli.common import console, refuse


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


def tokens_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from storage import tokens
    from storage.db import session_scope

    with session_scope() as session:
        revoked = tokens.revoke(session, name)
    if not revoked:
        refuse(f"no active token named {name!r}")
        raise typer.Exit(1)
    console.print(f"token {name!r} revoked")
