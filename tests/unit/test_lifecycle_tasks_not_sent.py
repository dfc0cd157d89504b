"""A lifecycle task whose change committed is not failed by a broker that does not take its
follow-up (tasks/lifecycle.py): the run is ok and says what was not sent, as the operator's retrain
answers `not_sent`. Run on an in-memory SQLite database, with a send that raises as kombu does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kombu.exceptions import OperationalError
from sqlmodel import Session, select

import tasks.app
import tasks.lifecycle as lifecycle_tasks
from fairvalue import lifecycle, pipeline
from fairvalue.lifecycle import loops, sweep
from fairvalue.settings import get_settings
from storage import requests, runs
from storage.ingest import add_items, ensure_collection
from storage.tables import TaskRun, TrainingRequest, utcnow
from tasks import names
from tests.builders import sessions_on


@pytest.fixture
def broker_down(memory_engine, monkeypatch):
    """The engine holding a loaded default collection; every send refused as by a broker that is down."""
    for module in (runs, loops, pipeline, sweep):  # the run, the paused check, is_loaded, mark_(un)published
        sessions_on(monkeypatch, module, memory_engine)
    with Session(memory_engine) as session:
        add_items(session, ensure_collection(session, get_settings().collection), [{"item_key": "1"}])
        session.commit()

    def refused(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.app.app, "send_task", refused)
    monkeypatch.setattr(tasks.app, "database_now", utcnow)  # request_nowcast's clock: the database's
    return memory_engine


def _run(engine, task_name: str) -> TaskRun:
    with Session(engine) as session:
        return session.exec(select(TaskRun).where(TaskRun.task_name == task_name)).one()


def test_a_policy_request_the_broker_did_not_take_is_left_to_the_sweep_and_the_run_is_ok(broker_down, monkeypatch):
    """The run used to fail (OperationalError) although its request was committed."""
    with Session(broker_down) as session:
        request, _ = requests.record(session, ensure_collection(session, get_settings().collection), "k", "age")
        session.commit()
        request_id = request.id
    monkeypatch.setattr(lifecycle, "run_policy", lambda settings: lifecycle.PolicyOutcome(
        True, ["champion is 9.0 days old > 7"], {}, request_id, True))

    done = lifecycle_tasks.retrain_policy.run()
    stored = _run(broker_down, names.POLICY)
    assert stored.status == "ok" and stored.detail == done
    assert (done["request_id"], done["new_request"], done["published"]) == (request_id, True, False)
    assert done["not_sent"].startswith("OperationalError: Error 111")
    assert done["not_sent"].endswith("the training sweep (hourly) publishes it")
    with Session(broker_down) as session:  # unpublished: the sweep's to republish
        assert session.get(TrainingRequest, request_id).published_at is None
        assert requests.to_republish(session, timedelta(minutes=get_settings().sweep_stale_minutes)) == [request_id]


def test_a_promotion_whose_nowcast_the_broker_did_not_take_is_an_ok_training_run(broker_down, monkeypatch):
    """The run used to be recorded failed after train_request had committed the promotion."""
    committed = {"request_id": 7, "collection": "cryptopunks", "model_version": 3, "decision": "promote",
                 "reason": "Promoted: MAPE 0.10 <= 0.12"}
    monkeypatch.setattr(lifecycle, "train_request", lambda request_id, worker: dict(committed))

    done = lifecycle_tasks.train.run(7, collection="cryptopunks")
    stored = _run(broker_down, names.TRAIN)
    assert stored.status == "ok" and (stored.detail["decision"], stored.detail["model_version"]) == ("promote", 3)
    assert done["not_sent"].startswith("OperationalError:") and "monitor (hourly)" in done["not_sent"]
    assert stored.detail["not_sent"] == done["not_sent"]


def test_a_rollback_whose_nowcast_the_broker_did_not_take_is_an_ok_monitor_run(broker_down, monkeypatch):
    monkeypatch.setattr(lifecycle, "run_monitor", lambda settings: {
        "rolled_back_to": 1, "champion_not_published": {"champion": 1, "snapshot": 9}})

    done = lifecycle_tasks.monitor.run()
    stored = _run(broker_down, names.MONITOR)
    assert stored.status == "ok" and stored.detail["rolled_back_to"] == 1
    assert done["not_sent"].startswith("OperationalError:") and stored.detail["not_sent"] == done["not_sent"]


def _request(engine, key: str, **values) -> int:
    """A training request of the default collection, with `values` set on its row."""
    with Session(engine) as session:
        request, _ = requests.record(session, ensure_collection(session, get_settings().collection), key, "test")
        for name, value in values.items():
            setattr(request, name, value)
        session.add(request)
        session.commit()
        return request.id


def _to_republish(engine) -> list[int]:
    with Session(engine) as session:
        return requests.to_republish(session, timedelta(minutes=get_settings().sweep_stale_minutes))


def test_requests_the_sweep_could_not_send_wait_for_the_next_sweep_and_the_run_is_ok(broker_down):
    """The sweep's run used to fail at its first send. The requests stay for the next sweep: one
    queued (unpublished again), one whose holder's lease ran out (its worker died) and one still in
    its retry's backoff (unpublished again: the next sweep sends it with what is left of it)."""
    queued = _request(broker_down, "sweep-queued")
    lapsed = _request(broker_down, "sweep-lapsed", state=requests.TRAINING, claimed_by="dead/1/a", attempts=1,
                      lease_expires_at=utcnow() - timedelta(minutes=1))
    in_backoff = _request(broker_down, "sweep-in-backoff", attempts=1, not_before=utcnow() + timedelta(minutes=5))
    assert _to_republish(broker_down) == [queued, lapsed]

    done = lifecycle_tasks.sweep.run()
    stored = _run(broker_down, names.SWEEP)
    assert stored.status == "ok" and stored.detail == done
    assert (done["republished"], done["sent_with_countdown"]) == ([], [])
    assert done["not_sent"].startswith("OperationalError: Error 111")
    assert done["not_sent"].endswith(f"requests {[queued, lapsed, in_backoff]} wait for the next sweep (hourly)")
    assert _to_republish(broker_down) == [queued, lapsed]
    with Session(broker_down) as session:
        assert session.get(TrainingRequest, queued).published_at is None
        assert [i for i, _ in requests.unpublished_in_backoff(session, utcnow())] == [in_backoff]


def test_the_sweep_sends_a_request_in_its_backoff_with_the_rest_of_it_as_countdown(broker_down, monkeypatch):
    """As a resume does: it used to be left to the first sweep after its backoff, up to an hour late.
    Marked published, the next sweep inside the backoff sends it nothing more."""
    sent = []
    monkeypatch.setattr(tasks.app.app, "send_task", lambda *args, **kwargs: sent.append((kwargs["args"], kwargs)))
    queued = _request(broker_down, "sweep-queued")
    in_backoff = _request(broker_down, "sweep-in-backoff", attempts=1, not_before=utcnow() + timedelta(minutes=5))

    done = lifecycle_tasks.sweep.run()
    assert _run(broker_down, names.SWEEP).detail == done
    assert done["republished"] == [queued, in_backoff]
    assert [c["request_id"] for c in done["sent_with_countdown"]] == [in_backoff]
    assert 290 < done["sent_with_countdown"][0]["countdown_seconds"] <= 300
    assert [(args, kwargs["countdown"] is None) for args, kwargs in sent] == [([queued], True), ([in_backoff], False)]
    assert 290 < sent[1][1]["countdown"] <= 300

    again = lifecycle_tasks.sweep.run()
    assert (again["republished"], again["sent_with_countdown"], len(sent)) == ([], [], 2)


def test_a_failed_training_whose_retry_the_broker_did_not_take_fails_with_its_own_error(broker_down, monkeypatch):
    """The run failed all the same, but with the broker's OperationalError in place of the
    training's error. The request, back in the queue, is the sweep's to publish."""
    from fairvalue.lifecycle import training

    sessions_on(monkeypatch, training, broker_down)
    request_id = _request(broker_down, "retry", published_at=utcnow())  # its first message was sent

    def fails(request_id, worker):
        raise RuntimeError("the fit ran out of memory")

    monkeypatch.setattr(lifecycle, "train_request", fails)
    with pytest.raises(RuntimeError, match="out of memory"):
        lifecycle_tasks.train.run(request_id, collection="cryptopunks")
    stored = _run(broker_down, names.TRAIN)
    assert stored.status == "failed" and stored.detail["error"] == "RuntimeError: the fit ran out of memory"
    assert stored.detail["not_sent"].startswith("OperationalError:")
    assert stored.detail["not_sent"].endswith("the training sweep (hourly) publishes it")
    assert _to_republish(broker_down) == [request_id]


def test_a_resend_the_broker_did_not_take_is_forgotten_and_the_run_says_so(broker_down, monkeypatch):
    """A message turned away by a live lease sends the request again for when the lease runs out;
    the run used to fail when the broker refused that. Now the run is skipped as it would have been,
    says what was not sent, and the re-send is forgotten so a later duplicate may schedule it."""
    from fairvalue.lifecycle import training

    sessions_on(monkeypatch, training, broker_down)
    request_id = _request(broker_down, "resend", state=requests.TRAINING, claimed_by="holder/1/a", attempts=1,
                          lease_expires_at=utcnow() + timedelta(minutes=5),
                          resend_until=utcnow() + timedelta(minutes=5))
    monkeypatch.setattr(lifecycle, "train_request", lambda request_id, worker: {
        "status": "skipped", "skipped": "not claimable (state training): held by holder/1/a", "send_again_in": 305.0})

    done = lifecycle_tasks.train.run(request_id, collection="cryptopunks")
    stored = _run(broker_down, names.TRAIN)
    assert stored.status == "skipped" and stored.detail["not_sent"] == done["not_sent"]
    assert done["not_sent"].startswith("OperationalError:")
    assert done["not_sent"].endswith("the training sweep (hourly) publishes it once the lease has run out")
    with Session(broker_down) as session:
        assert session.get(TrainingRequest, request_id).resend_until is None


@pytest.mark.parametrize("state, retried", [("queued", True), ("failed", False), ("lost", False), (None, True)])
def test_a_failed_training_publishes_a_retry_only_for_a_request_queued_again(broker_down, monkeypatch, state, retried):
    """A retry was published after the last attempt too, when the request had failed for good (its
    message was then skipped). A failure with no state (the database down at the claim) is retried."""
    sent = []
    monkeypatch.setattr(tasks.app.app, "send_task", lambda *args, **kwargs: sent.append(kwargs))

    def fails(request_id, worker):
        failure = RuntimeError("the fit broke")
        if state is not None:
            failure.training_request_state = state
        raise failure

    monkeypatch.setattr(lifecycle, "train_request", fails)
    with pytest.raises(RuntimeError):
        lifecycle_tasks.train.run(7, collection="cryptopunks")
    assert len(sent) == (1 if retried else 0)
    assert _run(broker_down, names.TRAIN).status == "failed"
