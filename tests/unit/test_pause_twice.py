"""Pausing a paused loop, or resuming a running one, changes nothing and says so. A second
`fairvalue pause` used to replace the first one's reason, time and author with its own (an empty
reason, now), and `resume` of a running loop printed "resumed"."""

from __future__ import annotations

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from fairvalue.cli import app
from fairvalue.lifecycle import loops
from storage.tables import LoopState
from tests.builders import sessions_on

runner = CliRunner()


@pytest.fixture
def engine(memory_engine, monkeypatch):
    sessions_on(monkeypatch, loops, memory_engine)
    return memory_engine


def stored(engine, loop: str) -> tuple:
    with Session(engine) as session:
        state = session.get(LoopState, loop)
        return (state.paused, state.reason, state.updated_at, state.changed_by) if state else None


def test_a_second_pause_keeps_the_first_ones_reason_time_and_author(engine):
    assert loops.set_paused("nowcast", True, "bad model v7", by="alice@ops") is None
    first = stored(engine, "nowcast")
    kept = loops.set_paused("nowcast", True, "", by="bob@ops")
    assert (kept.paused, kept.reason, kept.changed_by) == (True, "bad model v7", "alice@ops")
    assert stored(engine, "nowcast") == first


def test_resuming_a_running_loop_changes_nothing(engine):
    assert loops.set_paused("policy", False, by="bob@ops").paused is False  # never paused: no row made
    assert stored(engine, "policy") is None
    loops.set_paused("policy", True, "look", by="alice@ops")
    assert loops.set_paused("policy", False, by="bob@ops") is None
    resumed = stored(engine, "policy")
    assert loops.set_paused("policy", False, by="carol@ops").paused is False
    assert stored(engine, "policy") == resumed


def test_the_cli_says_what_it_kept(engine):
    assert runner.invoke(app, ["pause", "monitor", "--reason", "rollback storm"]).output.strip() == "monitor paused"
    again = runner.invoke(app, ["pause", "monitor"])
    assert again.exit_code == 0
    said = " ".join(again.output.split())
    assert said.startswith("monitor was already paused, since ") and said.endswith(": rollback storm (kept as it was)")
    assert stored(engine, "monitor")[1] == "rollback storm"
    assert runner.invoke(app, ["resume", "monitor"]).output.strip() == "monitor resumed"
    assert runner.invoke(app, ["resume", "monitor"]).output.strip() == "monitor was not paused"


def test_a_pause_reason_is_held_to_what_an_operator_reason_may_be(engine):
    """A pause's reason was stored whatever its length (and a NUL broke the insert on PostgreSQL):
    it is refused as a retrain's or a promotion's reason is, exit 2 naming --reason, nothing stored."""
    from fairvalue.lifecycle import MAX_REASON_LENGTH

    for bad in ("x" * (MAX_REASON_LENGTH + 1), "a\x00b"):
        refused = runner.invoke(app, ["pause", "training", "--reason", bad])
        assert refused.exit_code == 2 and "--reason" in refused.output, refused.output
    assert stored(engine, "training") is None
    assert runner.invoke(app, ["pause", "training", "--reason", "  nightly upgrade "]).exit_code == 0
    assert stored(engine, "training")[1] == "nightly upgrade"
