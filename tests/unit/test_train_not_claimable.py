"""A training message that finds its request held by another claim comes back once the lease has
run out (fairvalue/lifecycle.py `_not_claimable`): the holder may be dead."""

from __future__ import annotations

from datetime import timedelta

from fairvalue import lifecycle
from storage.tables import TrainingRequest, utcnow


def _request(state="training", lease_left=timedelta(seconds=300), attempts=1, naive=False):
    expires = utcnow() + lease_left
    return TrainingRequest(id=7, collection_id=1, idempotency_key="k", state=state, reason="r", attempts=attempts,
                           claimed_by="victim@host/123/abcd", lease_expires_at=expires.replace(tzinfo=None)
                           if naive else expires)


def test_a_request_held_under_a_live_lease_sends_the_message_again_after_it():
    outcome = lifecycle._not_claimable(_request(), max_attempts=3)
    assert outcome["status"] == "skipped"
    assert outcome["skipped"].startswith("not claimable (state training): held by victim@host/123/abcd")
    assert 300 < outcome["send_again_in"] <= 300 + lifecycle.RESEND_MARGIN_SECONDS


def test_a_naive_lease_time_is_utc():  # as SQLite hands it back
    assert 0 < lifecycle._not_claimable(_request(naive=True), max_attempts=3)["send_again_in"] < 310


def test_nothing_to_come_back_for():
    decided = lifecycle._not_claimable(_request(state="decided"), max_attempts=3)
    assert decided == {"skipped": "not claimable (state decided)"}
    lapsed = lifecycle._not_claimable(_request(lease_left=timedelta(seconds=-1)), max_attempts=3)
    assert "send_again_in" not in lapsed  # the sweep republishes it
    last = lifecycle._not_claimable(_request(attempts=3), max_attempts=3)
    assert "send_again_in" not in last and last["status"] == "skipped" and "last attempt" in last["skipped"]
    assert lifecycle._not_claimable(None, max_attempts=3) == {"skipped": "not claimable (missing)"}
