"""What resuming the training loop publishes, and with what countdown (storage.requests.backoff_left,
unpublished_in_backoff and to_republish), on a clock the test sets: a request still in its retry's
backoff is sent for when that ends, one past it at once, one whose message is on its way not at all;
and the sweep sends none of them again while its message is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

import storage.tables  # noqa: F401  (registers the tables)
from storage import requests
from storage.ingest import ensure_collection
from storage.tables import TrainingRequest

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
STALE = timedelta(minutes=30)


def test_the_countdown_is_what_is_left_of_the_backoff_and_none_once_it_is_over():
    assert requests.backoff_left(NOW + timedelta(seconds=42.5), NOW) == 42.5
    assert requests.backoff_left(NOW + timedelta(hours=1), NOW) == 3600
    assert requests.backoff_left(NOW, NOW) is None  # ends now: the claim takes it now
    assert requests.backoff_left(NOW - timedelta(seconds=1), NOW) is None
    assert requests.backoff_left(None, NOW) is None  # never failed: no backoff
    # SQLite hands back naive datetimes: read as UTC, as every stored time is.
    assert requests.backoff_left((NOW + timedelta(seconds=7)).replace(tzinfo=None), NOW) == 7


def test_resume_sends_an_unpublished_request_in_its_backoff_and_the_sweep_does_not_send_it_again(memory_engine):
    with Session(memory_engine) as session:
        coll = ensure_collection(session, "cryptopunks")
        ids = {name: requests.record(session, coll, f"resume-{name}", "test")[0].id
               for name in ("in_backoff", "past_backoff", "retry_on_its_way", "never_failed")}
        for name, not_before, published_at in (
            ("in_backoff", NOW + timedelta(seconds=90), None),  # its retry was not sent
            ("past_backoff", NOW - timedelta(seconds=1), None),
            ("retry_on_its_way", NOW + timedelta(seconds=90), NOW - timedelta(seconds=30)),  # sent with the countdown
            ("never_failed", None, None),
        ):
            row = session.get(TrainingRequest, ids[name])
            row.not_before, row.published_at = not_before, published_at
        session.commit()

        # What resume publishes: the one in its backoff with 90 s left, the sweep's list at once.
        waiting = requests.unpublished_in_backoff(session, NOW)
        assert [(i, requests.backoff_left(not_before, NOW)) for i, not_before in waiting] == [(ids["in_backoff"], 90)]
        assert requests.to_republish(session, STALE, NOW) == sorted([ids["past_backoff"], ids["never_failed"]])

        # Published by the resume (with its countdown): the sweep leaves it alone inside the backoff
        # and until its message, due as the backoff ends, has been unclaimed for the stale time.
        row = session.get(TrainingRequest, ids["in_backoff"])
        row.published_at = NOW
        session.commit()
        assert requests.unpublished_in_backoff(session, NOW) == []  # a second resume neither
        for later in (timedelta(seconds=89), timedelta(seconds=91), timedelta(seconds=89) + STALE):
            assert ids["in_backoff"] not in requests.to_republish(session, STALE, NOW + later), later
        # Unclaimed that long after it was due: its message was lost, and the sweep sends another.
        assert ids["in_backoff"] in requests.to_republish(session, STALE, NOW + timedelta(seconds=91) + STALE)
