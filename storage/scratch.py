"""Throw-away PostgreSQL databases, for the test suite and the benchmarks.

Each is created with a comment naming the host and the process that made it. A session killed
before its cleanup (SIGKILL, a CI timeout) leaves its database behind, and nothing else would
ever drop it; the next session on the same host drops those whose process is gone
(`drop_abandoned`). A database of a live process, of another host, or without such a comment
(made by hand, or before this module) is never touched."""

from __future__ import annotations

import os
import re
import socket
import uuid

import psycopg

_OWNER = re.compile(r"^fairvalue scratch: host=(?P<host>\S+) pid=(?P<pid>\d+)$")


def owner_comment(host: str | None = None, pid: int | None = None) -> str:
    return f"fairvalue scratch: host={host or socket.gethostname()} pid={pid or os.getpid()}"


def new_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def create(admin_url: str, name: str) -> None:
    """A new empty database, marked as this process's."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{owner_comment()}'")  # nosec B608: both are ours


def drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def drop_abandoned(admin_url: str, prefix: str) -> list[str]:
    """Drop the `<prefix>*` databases this host's dead processes made; their names."""
    host = socket.gethostname()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE starts_with(datname, %s)",
            (prefix,),
        ).fetchall()
        dropped = []
        for name, comment in rows:
            owner = _OWNER.match(comment or "")
            if owner and owner["host"] == host and not _alive(int(owner["pid"])):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
    return dropped
