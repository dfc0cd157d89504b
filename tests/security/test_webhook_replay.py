"""Webhook replays are refused with a clear 4xx and recorded in webhook_deliveries."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from api import signing
from storage.db import session_scope
from storage.tables import RejectedSale, Sale, WebhookDelivery

pytestmark = pytest.mark.integration
SECRET = "test-secret"  # tests/conftest.py


def a_sale(event_id: str, price: float = 95.0, item: str = "17") -> dict:
    ts = datetime.now(UTC) - timedelta(minutes=2)
    return {"event_id": event_id, "timestamp": ts.isoformat(), "punk_id": item, "price_eth": price}


def deliver(client, body: bytes, header: str):
    return client.post("/v1/webhooks/sales", content=body, headers={signing.HEADER: header})


def recorded(digest: str) -> list[WebhookDelivery]:
    with session_scope() as session:
        return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.signature_sha256 == digest)
                                 .order_by(WebhookDelivery.id)).all())


@pytest.mark.usefixtures("leaves_nothing_queued")  # its follow-up: no worker of this file takes it
def test_the_same_delivery_twice_is_a_recorded_409(client):
    """After: the sale stored once; the second delivery refused (409) and both recorded."""
    body = json.dumps(a_sale(f"replay-{time.time_ns()}")).encode()
    t = int(time.time())
    header = signing.sign(SECRET, body, t)

    first = deliver(client, body, header)
    # The same signed bytes again, with the header spelt differently (an extra bogus v1): still a replay.
    again = deliver(client, body, header + ",v1=" + "0" * 64)

    assert first.status_code == 202 and first.json()["accepted"] == 1
    assert again.status_code == 409, again.text
    assert "replayed delivery" in again.json()["error"] and again.json()["status"] == 409
    rows = recorded(signing.delivery_digest(t, body))
    assert [(r.outcome, r.status_code) for r in rows] == [("accepted", 202), ("replay", 409)]


def test_a_replay_after_the_tolerance_window_is_a_recorded_401(client, monkeypatch):
    """After: the delivery accepted once; the same signature replayed once the tolerance has
    passed is refused (401) and recorded as a replay, not as a mere stale signature."""
    body = json.dumps(a_sale(f"late-replay-{time.time_ns()}")).encode()
    t = int(time.time())
    header = signing.sign(SECRET, body, t)
    assert deliver(client, body, header).status_code == 202

    later = t + 301  # the clock moves past the 300 s tolerance
    monkeypatch.setattr(signing.time, "time", lambda: later)
    replay = deliver(client, body, header)

    assert replay.status_code == 401
    assert "replayed delivery" in replay.json()["error"] and "tolerance" in replay.json()["error"]
    assert [r.outcome for r in recorded(signing.delivery_digest(t, body))] == ["accepted", "replay"]


def test_a_reused_event_id_with_another_body_is_refused_and_kept(client):
    """After: the first sale unchanged; the second call (same event id, other price) is a 409,
    its row kept in rejected_sales with the reason, the delivery recorded as a conflict."""
    event_id = f"reused-{time.time_ns()}"
    first = json.dumps(a_sale(event_id, price=95.0)).encode()
    other = json.dumps(a_sale(event_id, price=96.0)).encode()
    assert deliver(client, first, signing.sign(SECRET, first)).status_code == 202

    t = int(time.time())
    response = deliver(client, other, signing.sign(SECRET, other, t))

    assert response.status_code == 409, response.text
    assert "different content" in response.json()["error"]
    with session_scope() as session:
        stored = session.exec(select(Sale).where(Sale.event_id == event_id)).all()
        kept = session.exec(select(RejectedSale).where(RejectedSale.event_id == event_id)).all()
    assert [s.price for s in stored] == [95.0]
    assert [k.reason for k in kept] == ["duplicate_event_conflict"]
    assert [r.outcome for r in recorded(signing.delivery_digest(t, other))] == ["conflict"]


def test_bad_signatures_are_recorded_with_their_kind(client, own_refusal_cap):
    body = json.dumps(a_sale(f"forged-{time.time_ns()}")).encode()
    forged = deliver(client, body, signing.sign("not-the-secret", body))
    unsigned = client.post("/v1/webhooks/sales", content=body)

    assert forged.status_code == unsigned.status_code == 401
    assert (forged.json()["outcome"], unsigned.json()["outcome"]) == ("bad_signature", "unsigned")
    with session_scope() as session:
        stored = session.exec(select(Sale).where(Sale.event_id == json.loads(body)["event_id"])).first()
        outcomes = session.exec(select(WebhookDelivery.outcome).order_by(WebhookDelivery.id.desc()).limit(2)).all()
    assert stored is None
    assert sorted(outcomes) == ["bad_signature", "unsigned"]


def test_a_signed_time_no_datetime_holds_is_refused_and_recorded(client, own_refusal_cap):
    """A correctly signed call with t=10**20 is stale (401) and recorded like any other."""
    body = json.dumps(a_sale(f"far-{time.time_ns()}")).encode()
    response = deliver(client, body, signing.sign(SECRET, body, 10**20))
    assert response.status_code == 401 and response.json()["outcome"] == "stale"
    with session_scope() as session:
        last = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1)).one()
    assert (last.outcome, last.signed_at, last.status_code) == ("stale", None, 401)


def test_unsigned_floods_are_answered_but_not_all_recorded(client, monkeypatch):
    """Anyone can send an unsigned call; recording each would let anyone grow webhook_deliveries."""
    from api import webhooks
    from api.limits import MemoryCounter

    # A count of its own: the shared one (Redis) holds this minute's refusals of the tests before.
    monkeypatch.setattr(webhooks, "unauthenticated_refusals",
                        webhooks.UnauthenticatedRefusals(per_minute=3, counter_factory=MemoryCounter))
    if time.time() % 60 > 55:  # keep the calls inside one minute
        time.sleep(61 - time.time() % 60)
    body = f"flood-{time.time_ns()}".encode()
    answers = [client.post("/v1/webhooks/sales", content=body).status_code for _ in range(6)]
    assert answers == [401] * 6
    with session_scope() as session:
        kept = session.exec(select(WebhookDelivery).where(
            WebhookDelivery.body_sha256 == hashlib.sha256(body).hexdigest())).all()
    assert len(kept) == 3


def test_the_cap_on_recorded_refusals_is_shared_by_every_api_process(broker):
    """Two API processes (two counters) share one count in Redis: N processes do not keep N x 60."""
    import asyncio

    from api import webhooks

    processes = [webhooks.UnauthenticatedRefusals(per_minute=3) for _ in range(2)]
    client, now = f"cap-{time.time_ns()}", time.time()

    async def refusals() -> list[bool]:
        return [await processes[i % 2].record_this_one(client, now) for i in range(6)]

    assert asyncio.run(refusals()) == [True, True, True, False, False, False]
    assert broker.keys(f"fairvalue:webhook-refusals:{client}:*")


def test_with_redis_out_of_reach_counts_are_kept_in_the_process_and_that_is_logged_once(caplog):
    """A Redis that fails is not asked again for a while (api.limits.RedisCounter): no request
    waits on it each time, the log says so once, and the caps (the rate limit's, the recorded
    refusals') hold per process, as without Redis."""
    import asyncio
    import logging

    from api import webhooks
    from api.limits import RedisCounter

    asked = []

    class Down(RedisCounter):
        def _shared_hit(self, client, window):
            asked.append(client)
            raise ConnectionError("redis is down")

    refusals = webhooks.UnauthenticatedRefusals(per_minute=3, counter_factory=lambda: Down("redis://127.0.0.1:1/0"))
    now = time.time()

    async def flood() -> list[bool]:
        return [await refusals.record_this_one("flooder", now) for _ in range(6)]

    with caplog.at_level(logging.WARNING, logger="fairvalue.limits"):
        assert asyncio.run(flood()) == [True, True, True, False, False, False]
    assert asked == ["flooder"]  # asked once, then counted in the process
    assert sum("counted in this process" in r.getMessage() for r in caplog.records) == 1


def test_a_body_declared_as_xml_is_a_recorded_415_and_stores_nothing(client):
    sale = a_sale(f"xml-{time.time_ns()}")
    body = json.dumps(sale).encode()
    t = int(time.time())
    response = client.post("/v1/webhooks/sales", content=body, headers={
        signing.HEADER: signing.sign(SECRET, body, t), "Content-Type": "application/xml"})

    assert response.status_code == 415 and "is not JSON" in response.json()["error"], response.text
    rows = recorded(signing.delivery_digest(t, body))
    assert [(r.outcome, r.status_code) for r in rows] == [("unsupported_media_type", 415)]
    with session_scope() as session:
        assert session.exec(select(Sale).where(Sale.event_id == sale["event_id"])).first() is None
    # The same sale as curl -d sends it (a form, unasked) goes in.
    again = client.post("/v1/webhooks/sales", content=body, headers={
        signing.HEADER: signing.sign(SECRET, body), "Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 202 and again.json()["accepted"] == 1, again.text
