"""Every training fits on FAIRVALUE_TRAIN_THREADS OpenMP threads: a training request's, `fairvalue
train`'s (and `up`'s first), and a replay's retrains. Without it a fit took one thread per core,
and on a busy 2-core host those threads spinning at OpenMP barriers made a retrain 2.6-8.7x
slower than one thread (bench/training.py --busy)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlmodel import Session
from threadpoolctl import threadpool_info

import storage.tables  # noqa: F401  (registers the tables)
from fairvalue import evaluation, lifecycle, pipeline
from fairvalue.lifecycle import loops, training
from fairvalue.settings import Settings
from models import estimator
from storage import requests
from storage.ingest import ensure_collection
from tests.builders import sessions_on
from tests.unit.test_features import synthetic_market


class Seen(RuntimeError):
    """Raised by a recording fit to end a training once its thread count is known."""


def openmp_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"}


@pytest.fixture
def threads_of_each_fit(monkeypatch) -> list[set[int]]:
    """The OpenMP thread counts each estimator.fit ran under (it fits for real afterwards)."""
    seen: list[set[int]] = []
    real_fit = estimator.fit

    def fit(data, params=None, rows_from=None):
        seen.append(openmp_threads())
        return real_fit(data, params, rows_from)

    monkeypatch.setattr(estimator, "fit", fit)
    return seen


def test_the_test_process_itself_runs_one_thread():
    """What the tests below are measured against: tests/conftest.py sets OMP_NUM_THREADS=1, so a
    count of 2 seen in a fit can only come from the setting."""
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)

    assert openmp_threads() == {1}


def test_a_replay_retrains_on_the_setting_and_gives_the_threads_back(threads_of_each_fit):
    data = synthetic_market(n_sales=800, seed=4)
    evaluation.evaluate(data, pd.Timestamp("2021-04-10"), pd.Timestamp("2021-04-20"),
                        settings=Settings(train_threads=2, train_max_iter=20))
    assert len(threads_of_each_fit) >= 2 and all(seen == {2} for seen in threads_of_each_fit)
    assert openmp_threads() == {1}


@pytest.fixture
def engine(memory_engine, monkeypatch):
    for module in (training, loops, pipeline):
        sessions_on(monkeypatch, module, memory_engine)
    return memory_engine


def test_a_training_request_fits_on_the_setting(engine, threads_of_each_fit, monkeypatch):
    def records_then_stops(settings, params, checkpoint):
        threads_of_each_fit.append(openmp_threads())
        raise Seen("stop here")

    monkeypatch.setattr(training, "train_and_gate", records_then_stops)
    with Session(engine) as session:
        request, _ = requests.record(session, ensure_collection(session, "cryptopunks"), "threads-test", "test")
        session.commit()
        request_id = request.id
    with pytest.raises(Seen):  # the attempt fails (and the request goes back to the queue)
        lifecycle.train_request(request_id, "w/1/a", Settings(train_threads=2))
    assert threads_of_each_fit == [{2}]
    assert openmp_threads() == {1}


def test_fairvalue_train_fits_on_the_setting(engine, threads_of_each_fit, monkeypatch, tmp_path):
    with Session(engine) as session:
        ensure_collection(session, "cryptopunks")
        session.commit()
    monkeypatch.setattr(pipeline, "load_market_data", lambda session, coll: synthetic_market(n_sales=400, seed=1))

    def records_then_stops(data, params=None, rows_from=None):
        threads_of_each_fit.append(openmp_threads())
        raise Seen("stop here")

    monkeypatch.setattr(estimator, "fit", records_then_stops)
    with pytest.raises(Seen):
        pipeline.train(Settings(train_threads=2, collection="cryptopunks", artifacts_url=str(tmp_path)))
    assert threads_of_each_fit == [{2}]
    assert openmp_threads() == {1}
