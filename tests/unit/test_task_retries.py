"""A task that meets a transient database error (a restart, a failover, a dropped connection) is
sent again later, a bounded number of times, instead of failing: acked late, a failed task's
message is gone. Training keeps its own retry (its request row's lease and attempt count)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc

import tasks.ingest
from tasks import names
from tasks.app import app


def _database_down() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))


@pytest.mark.parametrize("error", [_database_down(), psycopg.OperationalError("server closed the connection")])
def test_a_transient_database_error_is_retried_with_backoff_then_given_up(monkeypatch, error):
    calls = []

    def fails(*_a, **_k):
        calls.append(1)
        raise error

    monkeypatch.setattr(tasks.ingest, "get_settings", fails)
    task = app.tasks[names.AFTER_SALES]
    result = task.apply(kwargs={"accepted": 1, "collection": "cryptopunks"})  # retries run eagerly, at once
    assert len(calls) == 1 + task.max_retries
    assert 1 <= task.max_retries <= 10 and task.retry_backoff  # bounded, and spaced out
    assert isinstance(result.result, type(error))  # given up: the error, not a retry forever


def test_other_errors_are_not_retried(monkeypatch):
    calls = []

    def fails(*_a, **_k):
        calls.append(1)
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(tasks.ingest, "get_settings", fails)
    app.tasks[names.AFTER_SALES].apply(kwargs={"accepted": 1, "collection": "cryptopunks"})
    assert len(calls) == 1


def test_every_task_but_training_retries_on_the_same_errors():
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if name.startswith("fairvalue.")}
    assert names.NOWCAST in ours and names.TRAIN in ours
    for name, task in ours.items():
        retried = hasattr(task, "_orig_run")  # celery wraps run() for autoretry_for
        assert retried == (name != names.TRAIN), name
