"""A training message that finds its request held by another claim comes back once the lease has
run out (fairvalue/lifecycle/training.py `_not_claimable`): the holder may be dead."""

from __future__ import annotations

from datetime import UTC, timedelta

from fairvalue import lifecycle
from fairvalue.lifecycle import loops, training
from storage.tables import TrainingRequest, utcnow


def _request(state="training", lease_left=timedelta(seconds=300), attempts=1, naive=False):
    expires = utcnow() + lease_left
    return TrainingRequest(id=7, collection_id=1, idempotency_key="k", state=state, reason="r", attempts=attempts,
                           claimed_by="victim@host/123/abcd", lease_expires_at=expires.replace(tzinfo=None)
                           if naive else expires)


def test_a_request_held_under_a_live_lease_sends_the_message_again_after_it():
    outcome = training._not_claimable(_request(), max_attempts=3)
    assert outcome["status"] == "skipped"
    assert outcome["skipped"].startswith("not claimable (state training): held by victim@host/123/abcd")
    assert 300 < outcome["send_again_in"] <= 300 + lifecycle.RESEND_MARGIN_SECONDS


def test_a_naive_lease_time_is_utc():  # as SQLite hands it back
    assert 0 < training._not_claimable(_request(naive=True), max_attempts=3)["send_again_in"] < 310


def test_nothing_to_come_back_for():
    decided = training._not_claimable(_request(state="decided"), max_attempts=3)
    assert decided == {"skipped": "not claimable (state decided)"}
    lapsed = training._not_claimable(_request(lease_left=timedelta(seconds=-1)), max_attempts=3)
    assert "send_again_in" not in lapsed  # the sweep republishes it
    last = training._not_claimable(_request(attempts=3), max_attempts=3)
    assert "send_again_in" not in last and last["status"] == "skipped" and "last attempt" in last["skipped"]
    assert training._not_claimable(None, max_attempts=3) == {"skipped": "not claimable (missing)"}


def test_two_duplicates_meeting_a_training_schedule_one_resend(memory_engine, monkeypatch):
    """Each duplicate used to send itself again once a lease until the request was decided; now
    the first schedules the request's one re-send and the second is acked, saying why."""
    from sqlmodel import Session

    from storage import requests
    from storage.ingest import ensure_collection
    from tests.builders import sessions_on

    for module in (training, loops):  # the training and the paused-loop check it makes
        sessions_on(monkeypatch, module, memory_engine)
    with Session(memory_engine) as session:
        request, _ = requests.record(session, ensure_collection(session, "cryptopunks"), "dups", "test")
        assert requests.claim(session, request.id, "holder/1/a", timedelta(seconds=300), max_attempts=3)
        session.commit()
        request_id = request.id

    first = lifecycle.train_request(request_id, "dup/2/b")
    second = lifecycle.train_request(request_id, "dup/3/c")
    assert 300 < first["send_again_in"] <= 300 + lifecycle.RESEND_MARGIN_SECONDS
    assert second["status"] == "skipped" and "send_again_in" not in second
    assert second["skipped"].startswith("not claimable (state claimed): held by holder/1/a")
    assert "a duplicate: the request's one re-send is already scheduled for" in second["skipped"]
    with Session(memory_engine) as session:  # SQLite hands back naive UTC
        pending = session.get(TrainingRequest, request_id).resend_until.replace(tzinfo=UTC)
    assert timedelta(seconds=300) < pending - utcnow() <= timedelta(seconds=300 + lifecycle.RESEND_MARGIN_SECONDS)

    # The re-send comes back when it is due, finds the lease renewed, and schedules the next one.
    with Session(memory_engine) as session:
        session.get(TrainingRequest, request_id).resend_until = utcnow() + timedelta(seconds=2)  # due, within slack
        session.commit()
    back = lifecycle.train_request(request_id, "dup/2/d")
    assert "send_again_in" in back
    assert "send_again_in" not in lifecycle.train_request(request_id, "dup/4/e")

    # A scheduled re-send the broker refused is forgotten: the next duplicate schedules it again.
    lifecycle.forget_resend(request_id)
    assert "send_again_in" in lifecycle.train_request(request_id, "dup/5/f")
