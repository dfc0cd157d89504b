"""A task run says which collection it is for from its start (storage/runs.py), on SQLite."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

import storage.tables  # noqa: F401  (registers the tables)
from storage import runs
from storage.tables import TaskRun
from tests.builders import sessions_on


@pytest.fixture
def engine(memory_engine, monkeypatch):
    sessions_on(monkeypatch, runs, memory_engine)
    return memory_engine


def _stored(engine, task_name):
    with Session(engine) as session:
        return session.exec(select(TaskRun).where(TaskRun.task_name == task_name)).one()


def test_a_running_run_shows_its_collection(engine):
    with runs.recorded_run("test.nowcast", "t-1", collection="cards") as run:
        running = _stored(engine, "test.nowcast")
        assert (running.status, running.collection) == ("running", "cards")
        with Session(engine) as session:
            assert runs.last_runs(session)[("test.nowcast", "cards")].status == "running"
        run["valued"] = 3
    done = _stored(engine, "test.nowcast")
    assert (done.status, done.collection, done.detail) == ("ok", "cards", {"collection": "cards", "valued": 3})


def test_the_body_s_collection_replaces_the_one_known_at_the_start(engine):
    with runs.recorded_run("test.train", collection="cards") as run:
        run["collection"] = "cryptopunks"  # the request row decides, not the message
    assert _stored(engine, "test.train").collection == "cryptopunks"


def test_a_run_for_every_collection_has_none(engine):
    with runs.recorded_run("test.sweep") as run:
        assert _stored(engine, "test.sweep").collection is None
        run["republished"] = []
    stored = _stored(engine, "test.sweep")
    assert (stored.collection, stored.detail) == (None, {"republished": []})


def test_a_failed_run_keeps_its_collection(engine):
    with pytest.raises(RuntimeError), runs.recorded_run("test.monitor", collection="cards"):
        raise RuntimeError("store down")
    stored = _stored(engine, "test.monitor")
    assert (stored.status, stored.collection) == ("failed", "cards")


@pytest.fixture
def punks(engine, monkeypatch):
    """The settings of a stored collection, as the commands' nowcasts look it up."""
    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from storage.ingest import ensure_collection

    sessions_on(monkeypatch, pipeline, engine)
    with Session(engine) as session:
        ensure_collection(session, "cryptopunks")
        session.commit()
    return get_settings().for_collection("cryptopunks")


def test_up_s_own_nowcast_is_recorded_as_a_nowcast_run(engine, punks, monkeypatch):
    from types import SimpleNamespace

    from fairvalue import pipeline
    from fairvalue.cli import running

    monkeypatch.setattr(pipeline, "nowcast",
                        lambda s, as_of=None: SimpleNamespace(snapshot_id=7, n_items=3, published=True))
    assert running.startup_nowcast(punks).snapshot_id == 7
    stored = _stored(engine, "fairvalue.nowcast")
    assert (stored.status, stored.collection) == ("ok", "cryptopunks")
    assert stored.detail == {"collection": "cryptopunks", "started_by": "fairvalue up", "snapshot_id": 7,
                             "n_items": 3, "published": True}


def test_a_command_s_refused_nowcast_is_recorded_skipped_with_why_and_a_mistyped_slug_not_at_all(engine, punks,
                                                                                                   monkeypatch):
    """`fairvalue nowcast` is recorded too: a worker's failed or skipped run stayed "the last nowcast"
    on the queue page after a command had published."""
    from fairvalue import pipeline
    from fairvalue.cli.snapshots import recorded_nowcast
    from fairvalue.errors import NotFound

    def no_champion(settings, as_of=None):
        raise pipeline.NoChampion("collection cryptopunks has no champion model")

    monkeypatch.setattr(pipeline, "nowcast", no_champion)
    with pytest.raises(pipeline.NoChampion):
        recorded_nowcast(punks, "fairvalue nowcast")
    stored = _stored(engine, "fairvalue.nowcast")
    assert stored.status == "skipped" and stored.detail == {
        "collection": "cryptopunks", "started_by": "fairvalue nowcast",
        "reason": "collection cryptopunks has no champion model"}
    with pytest.raises(NotFound):
        recorded_nowcast(punks.for_collection("cryptopunkz"), "fairvalue nowcast")
    with Session(engine) as session:
        assert len(session.exec(select(TaskRun)).all()) == 1


def test_tasks_names_lists_every_task_the_workers_register_once():
    """tasks.names.ALL is what the metrics count abandoned runs of from the first scrape."""
    from tasks import names
    from tasks.app import app

    app.loader.import_default_modules()
    assert {name for name in app.tasks if name.startswith("fairvalue.")} == set(names.ALL)
    assert len(names.ALL) == len(set(names.ALL))
