"""A webhook row's keys are the ones its kind is read by: a key outside them refuses the call with
a 422 naming it (and the webhook it belongs to, when it is the other kind's), recorded, with
nothing stored. Ignored, a listing's "expires" kept its ask open for ever, a listing sent as a
sale was stored as a completed sale, and the sales beside a body of listings were lost."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from api import signing
from storage.db import session_scope
from storage.tables import Listing, Sale, WebhookDelivery

pytestmark = pytest.mark.integration
SECRET = "test-secret"  # tests/conftest.py
SALES, LISTINGS = "/v1/webhooks/sales", "/v1/webhooks/listings"


def _event(kind: str, **extra) -> dict:
    ts = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    return {"event_id": f"keys-{kind}-{time.time_ns()}", "timestamp": ts, "item_id": "17", "price": 95.0, **extra}


CASES = {
    "a listing sent as a sale": (SALES, lambda: [_event("ask", expires_at=None)], "send those to " + LISTINGS),
    "a sale sent as a listing": (LISTINGS, lambda: {"listings": [_event("sale", seller="0xa", buyer="0xb")]},
                                 "send those to " + SALES),
    "a misspelled expiry": (LISTINGS, lambda: {"listings": [_event("exp", expires="2030-01-01T00:00:00Z")]},
                            "unknown key 'expires' (did you mean 'expires_at'?) in listing 1"),
    "a currency no sale is read by": (SALES, lambda: [_event("ok"), _event("usd", currency="USD")],
                                      "unknown key 'currency' in sale 2"),
    "a key beside the sales": (SALES, lambda: {"sales": [_event("beside")], "collection": "cards"},
                               "unknown key 'collection' beside the sales"),
    "sales beside the listings": (LISTINGS, lambda: {"listings": [_event("l")], "sales": [_event("s")]},
                                  "send the sales to " + SALES),
}


@pytest.mark.parametrize("name", CASES)
def test_a_key_the_rows_are_not_read_by_refuses_the_call_and_stores_nothing(client, name):
    path, payload, reason = CASES[name]
    body = json.dumps(payload()).encode()
    t = int(time.time())
    response = client.post(path, content=body, headers={signing.HEADER: signing.sign(SECRET, body, t),
                                                        "content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert reason in response.json()["error"]
    ids = [e["event_id"] for e in (json.loads(body) if isinstance(json.loads(body), list) else
                                    [*json.loads(body).get("sales", []), *json.loads(body).get("listings", [])])]
    with session_scope() as session:
        delivery = session.exec(select(WebhookDelivery).where(
            WebhookDelivery.signature_sha256 == signing.delivery_digest(t, body))).one()
        stored = [*session.exec(select(Sale.event_id).where(Sale.event_id.in_(ids))).all(),
                  *session.exec(select(Listing.event_id).where(Listing.event_id.in_(ids))).all()]
    assert (delivery.status_code, delivery.accepted_signature) == (422, None)
    assert stored == []


@pytest.mark.usefixtures("leaves_nothing_queued")  # its follow-ups: no worker of this file takes them
def test_every_name_a_sale_or_a_listing_is_read_by_is_taken(client):
    sale = _event("aliases", source="test", time_precision="second", seller="0xa", buyer="0xb")
    sale["punk_id"] = sale.pop("item_id")
    sale["price_eth"] = sale.pop("price")
    listing = _event("ask-aliases", source="test", expires_at="2030-01-01T00:00:00Z")
    for path, payload in ((SALES, [sale]), (LISTINGS, {"listings": [listing]})):
        body = json.dumps(payload).encode()
        response = client.post(path, content=body, headers={signing.HEADER: signing.sign(SECRET, body),
                                                            "content-type": "application/json"})
        assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
