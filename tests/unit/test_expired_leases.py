"""/v1/queue counts the training requests whose lease ran out (storage.requests.expired_leases): a
training worker killed whole sends nothing back, its message waits out the visibility timeout, and
until the hourly sweep its request read `training` with nothing to say it was orphaned."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

import storage.tables  # noqa: F401  (registers the tables)
from storage import requests
from storage.ingest import ensure_collection
from storage.tables import TrainingRequest, utcnow


def test_only_claimed_or_training_requests_past_their_lease_count(memory_engine):
    with Session(memory_engine) as session:
        coll = ensure_collection(session, "cryptopunks")
        ids = [requests.record(session, coll, f"lease-{i}", "test")[0].id for i in range(4)]
        session.commit()
        for request_id in ids[:3]:
            assert requests.claim(session, request_id, "w/1/a", timedelta(minutes=10), max_attempts=3)
        session.commit()
        assert requests.expired_leases(session) == 0  # three live leases and one queued request
        for request_id, state in ((ids[0], requests.TRAINING), (ids[1], requests.CLAIMED)):
            row = session.get(TrainingRequest, request_id)
            row.state, row.lease_expires_at = state, utcnow() - timedelta(seconds=1)
        session.commit()
        assert requests.expired_leases(session) == 2
        decided = session.get(TrainingRequest, ids[2])
        decided.state, decided.lease_expires_at = requests.DECIDED, utcnow() - timedelta(seconds=1)
        session.commit()
        assert requests.expired_leases(session) == 2  # a decided request's old lease is no orphan
