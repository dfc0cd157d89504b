"""Listings on real parts: a signed call stores them once, a replay and a sales body are refused,
and the next nowcast's signal reads the open ask (BUY under the value) until it is withdrawn."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from api import signing
from fairvalue import pipeline
from storage.db import session_scope
from storage.tables import Listing, RejectedListing

pytestmark = pytest.mark.integration
SECRET = "test-secret"
PATH = "/v1/webhooks/listings"


def signed_body(payload) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    return body, {signing.HEADER: signing.sign(SECRET, body), "content-type": "application/json"}


def post(client, payload):
    body, headers = signed_body(payload)
    return client.post(PATH, content=body, headers=headers)


def a_listing(event_id: str, item: str, price: float | None, minutes_ago: float = 1) -> dict:
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"event_id": event_id, "item_id": item, "price": price, "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "source": "test"}


def test_a_signed_call_stores_each_listing_once_and_keeps_what_it_refuses(client):
    tag = datetime.now(UTC).timestamp()
    good, bad = a_listing(f"lst-a-{tag}", "1001", 80.0), a_listing(f"lst-b-{tag}", "99999", 80.0)
    body, headers = signed_body({"listings": [good, bad]})
    first = client.post(PATH, content=body, headers=headers)
    replay = client.post(PATH, content=body, headers=headers)
    resent = post(client, {"listings": [good]})
    changed = post(client, {"listings": [{**good, "price": 70.0}]})

    assert first.status_code == 202, first.text
    answer = first.json()
    assert (answer["accepted"], answer["duplicate"], answer["rejected"]) == (1, 0, 1)
    assert answer["rejected_by_reason"] == {"unknown_item": 1} and answer["follow_up"] == "enqueued"
    assert replay.status_code == 409 and "replayed delivery" in replay.json()["error"]
    assert resent.status_code == 202 and resent.json()["duplicate"] == 1
    assert changed.status_code == 409 and changed.json()["outcome"] == "conflict"
    with session_scope() as session:
        stored = session.exec(select(Listing.price).where(Listing.event_id == good["event_id"])).all()
        kept = set(session.exec(select(RejectedListing.reason).where(
            RejectedListing.event_id.in_([good["event_id"], bad["event_id"]]))).all())
    assert stored == [80.0]
    assert kept == {"unknown_item", "duplicate_event_conflict"}


@pytest.mark.parametrize("payload, status", [
    ([{"event_id": "x", "item_id": "1", "price": 1.0, "timestamp": "2021-01-01T00:00:00Z"}], 422),  # a sales shape
    ({"sales": []}, 422), ({"listings": []}, 422), ({"listings": [1]}, 422),
])
def test_a_body_that_is_no_listings_call_gets_a_reason(client, payload, status):
    response = post(client, payload)
    assert response.status_code == status and response.json()["error"]


def test_a_collection_that_cannot_take_listings_refuses_them_and_stores_nothing(client, monkeypatch):
    from fairvalue.settings import get_settings

    monkeypatch.setattr(get_settings(), "collection", "not-seeded")
    event_id = f"lst-none-{datetime.now(UTC).timestamp()}"
    response = post(client, {"listings": [a_listing(event_id, "1", 80.0)]})
    assert response.status_code == 409 and "fairvalue seed" in response.json()["error"]
    with session_scope() as session:  # by its own id: other tests store listings of item 1 at 80 too
        assert session.exec(select(Listing).where(Listing.event_id == event_id)).first() is None


def test_an_unsigned_call_is_refused(client):
    response = client.post(PATH, content=b'{"listings": []}', headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_a_body_of_listings_is_refused_by_the_sales_webhook_and_its_signature_stays_unspent(client):
    body, headers = signed_body({"listings": [a_listing(f"lst-path-{datetime.now(UTC).timestamp()}", "1002", 90.0)]})
    wrong = client.post("/v1/webhooks/sales", content=body, headers=headers)
    right = client.post(PATH, content=body, headers=headers)
    assert wrong.status_code == 422 and PATH in wrong.json()["error"]
    assert right.status_code == 202 and right.json()["accepted"] == 1


def test_an_oversized_call_is_refused_and_recorded(client, own_refusal_cap):
    from storage.tables import WebhookDelivery

    body = b'{"listings": [' + b" " * 1_100_000 + b"]}"
    response = client.post(PATH, content=body, headers={signing.HEADER: signing.sign(SECRET, body)})
    assert response.status_code == 413 and response.json()["outcome"] == "too_large"
    with session_scope() as session:
        last = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1)).one()
    assert (last.outcome, last.status_code) == ("too_large", 413)


def test_the_next_nowcast_signals_an_ask_under_the_value_until_it_is_withdrawn(client):
    item = "2024"
    value = client.get(f"/v1/items/{item}").json()["fair_value"]
    tag = datetime.now(UTC).timestamp()
    assert post(client, {"listings": [a_listing(f"lst-ask-{tag}", item, round(0.5 * value, 4))]}).status_code == 202
    pipeline.nowcast()
    listed = client.get(f"/v1/items/{item}").json()
    page = client.get("/v1/collections/cryptopunks/signals?signal=BUY&limit=500").json()

    assert (listed["signal"], listed["signal_basis"]) == ("BUY", "ask")
    assert listed["ask"]["price"] == pytest.approx(0.5 * value, rel=1e-4)
    assert listed["deviation"] == pytest.approx(listed["ask"]["price"] / listed["fair_value"] - 1, rel=1e-4)
    entry = next(s for s in page["signals"] if s["item_id"] == item)
    assert entry["ask_price"] == listed["ask"]["price"] and entry["ask_at"] == listed["ask"]["listed_at"]
    assert "listed at" in client.get(f"/items/{item}").text

    assert post(client, {"listings": [a_listing(f"lst-off-{tag}", item, None, minutes_ago=0.5)]}).status_code == 202
    pipeline.nowcast()
    withdrawn = client.get(f"/v1/items/{item}").json()
    # Its last sale is from 2021, past FAIRVALUE_SIGNAL_MAX_AGE_DAYS: no market price is left.
    assert withdrawn["ask"] is None and withdrawn["signal"] == "HOLD"
    assert (withdrawn["signal_basis"], withdrawn["deviation"]) == (None, None)


def test_an_accepted_listing_reaches_the_published_signal_through_the_worker(client, worker):
    from tests.integration.test_live_loop import wait_for

    item = "4156"
    value = client.get(f"/v1/items/{item}").json()["fair_value"]
    response = post(client, {"listings": [a_listing(f"lst-worker-{datetime.now(UTC).timestamp()}", item,
                                                    round(0.5 * value, 4))]})
    assert response.status_code == 202 and response.json()["follow_up"] == "enqueued"
    # No manual nowcast: the follow-up asks the worker for one (within FAIRVALUE_LISTING_NOWCAST_MIN_SECONDS).
    listed = wait_for(lambda: (body := client.get(f"/v1/items/{item}").json())["ask"] and body)
    assert listed["signal"] == "BUY" and listed["ask"]["price"] == pytest.approx(0.5 * value, rel=1e-4)
