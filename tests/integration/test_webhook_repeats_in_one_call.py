"""An event id given twice in one signed call, sales and listings alike: the same content again is a
duplicate, other content a conflict kept with its row and naming the id, and a row whose content
is what its id holds is a duplicate, as the rows sent one after another would be told."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from api import signing
from storage.db import session_scope
from storage.tables import Listing, RejectedListing, RejectedSale, Sale

pytestmark = pytest.mark.integration
SECRET = "test-secret"  # tests/conftest.py


def _post(client, kind: str, rows: list[dict]):
    body = json.dumps({kind: rows}).encode()
    return client.post(f"/v1/webhooks/{kind}", content=body, headers={
        signing.HEADER: signing.sign(SECRET, body, int(time.time())), "content-type": "application/json"})


@pytest.mark.usefixtures("leaves_nothing_queued")  # its follow-up: no worker of this file takes it
@pytest.mark.parametrize("kind", ["sales", "listings"])
def test_an_event_id_twice_in_one_call(client, kind):
    event_id = f"twice-{kind}-{time.time_ns()}"
    ts = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")

    def event(price: float) -> dict:
        return {"event_id": event_id, "timestamp": ts, "item_id": "17", "price": price}

    first = _post(client, kind, [event(95.0), event(96.0), event(95.0)])
    assert first.status_code == 202, first.text
    assert {k: first.json()[k] for k in ("accepted", "duplicate", "rejected", "rejected_by_reason")} == {
        "accepted": 1, "duplicate": 1, "rejected": 1, "rejected_by_reason": {"duplicate_event_conflict": 1}}
    stored, refused = (Sale, RejectedSale) if kind == "sales" else (Listing, RejectedListing)
    with session_scope() as session:
        assert session.exec(select(stored.price).where(stored.event_id == event_id)).all() == [95.0]
        kept = session.exec(select(refused.reason, refused.detail, refused.row).where(
            refused.event_id == event_id)).all()
    assert [(reason, row["price"]) for reason, _, row in kept] == [("duplicate_event_conflict", 96.0)]
    assert repr(event_id) in kept[0][1]

    # Stored at 95 now: 96 is a conflict, and 95 after it a duplicate (it was a conflict too: a 409).
    again = _post(client, kind, [event(96.0), event(95.0)])
    assert again.status_code == 202, again.text
    assert (again.json()["duplicate"], again.json()["rejected"], again.json()["rejected_kept_before"]) == (1, 1, 1)
