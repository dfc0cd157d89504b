"""storage.scratch: a killed session's database is dropped by the next, and nothing else is."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from storage import scratch
from tests.conftest import PG_ADMIN_URL, TEST_DB

pytestmark = pytest.mark.integration


def _databases(prefix: str) -> set[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                               (prefix,))}


def test_only_the_databases_of_this_hosts_dead_processes_are_dropped():
    prefix = f"{TEST_DB}_sweep_"
    gone = subprocess.Popen(["true"])  # noqa: S603, S607 - its pid is free once it is reaped
    gone.wait()
    owners = {"dead": scratch.owner_comment(pid=gone.pid),
              "live": scratch.owner_comment(pid=os.getpid()),
              "elsewhere": scratch.owner_comment(host="another-host", pid=gone.pid),
              "unmarked": None}
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name, comment in owners.items():
            conn.execute(f'CREATE DATABASE "{prefix}{name}"')
            if comment:
                conn.execute(f"COMMENT ON DATABASE \"{prefix}{name}\" IS '{comment}'")
    try:
        assert scratch.drop_abandoned(PG_ADMIN_URL, prefix) == [f"{prefix}dead"]
        assert _databases(prefix) == {f"{prefix}{name}" for name in ("live", "elsewhere", "unmarked")}
        assert scratch.drop_abandoned(PG_ADMIN_URL, prefix) == []  # nothing more to do
    finally:
        for name in owners:
            scratch.drop(PG_ADMIN_URL, f"{prefix}{name}")
    assert _databases(prefix) == set()


def test_a_created_database_is_marked_as_this_processs():
    name = scratch.new_name(f"{TEST_DB}_mark_")
    scratch.create(PG_ADMIN_URL, name)
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            (comment,) = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                      "WHERE datname = %s", (name,)).fetchone()
        assert comment == scratch.owner_comment()
        assert scratch.drop_abandoned(PG_ADMIN_URL, name) == []  # this process lives
    finally:
        scratch.drop(PG_ADMIN_URL, name)
