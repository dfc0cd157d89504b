"""`fairvalue worker`: the queues it takes (repeated or comma-separated, as celery's own -Q) and
a node name of its own, so a general and a training worker on one host are two workers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fairvalue.cli import app, running

runner = CliRunner()


@pytest.fixture
def execs(monkeypatch) -> list[list[str]]:
    seen: list[list[str]] = []
    monkeypatch.setattr(running.os, "execv", lambda program, args: seen.append(args))
    return seen


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_the_general_and_the_training_worker_get_different_node_names(execs):
    assert runner.invoke(app, ["worker"]).exit_code == 0
    assert runner.invoke(app, ["worker", "-Q", "training", "--concurrency", "1"]).exit_code == 0
    general, training = execs
    assert option(general, "-Q") == "default,ingest,nowcast" and option(general, "-n") == "general@%h"
    assert option(training, "-Q") == "training" and option(training, "-n") == "training@%h"


def test_a_name_given_is_used(execs):
    assert runner.invoke(app, ["worker", "-Q", "nowcast", "-n", "nowcast2@%h"]).exit_code == 0
    assert option(execs[0], "-n") == "nowcast2@%h"


def test_queues_may_be_comma_separated_or_repeated(execs):
    for args in (["-Q", "default,ingest"], ["-Q", "default", "-Q", "ingest"], ["-Q", "default, ingest,default"]):
        result = runner.invoke(app, ["worker", *args])
        assert result.exit_code == 0, result.output
        assert option(execs[-1], "-Q") == "default,ingest"
        assert option(execs[-1], "-n") == "default-ingest@%h"


def test_an_unknown_queue_is_refused_by_name(execs):
    result = runner.invoke(app, ["worker", "-Q", "default,trainig"])
    assert result.exit_code == 2 and "trainig" in result.output and not execs
