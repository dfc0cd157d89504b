"""A batch of webhook calls on SQLite (the embedded setup): the look-ups run one after another
instead of in a pipeline, and every call still gets its own outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from storage.tables import Sale, WebhookDelivery
from storage.webhook_batch import WebhookCall
from storage.webhook_calls import ingest_calls


def a_call(digest: str, *sales: dict) -> WebhookCall:
    return WebhookCall(list(sales), b"{}", digest, 1_700_000_000, "test")


def sale(event_id: str, price: float, item: str = "1") -> dict:
    return {"event_id": event_id, "timestamp": "2024-01-02T12:00:00Z", "item_key": item, "price": price}


def test_a_batch_on_sqlite(sqlite_market):
    session, _ = sqlite_market
    calls = [a_call("d1", sale("e1", 95.0)), a_call("d2", sale("e1", 96.0), sale("e2", 10.0)),
             a_call("d1", sale("e1", 95.0)), a_call("d3", sale("e1", 95.0), sale("e3", 90.0, item="2"))]
    outcomes = ingest_calls(session, "cryptopunks", calls, 0.2)
    session.commit()
    stored = dict(session.exec(select(Sale.event_id, Sale.price)).all())
    recorded = session.exec(select(WebhookDelivery.signature_sha256, WebhookDelivery.status_code)).all()

    first, conflict_and_cheap, replay, duplicate_and_new = outcomes
    assert (first.report.accepted, first.report.rejected) == (1, 0)
    assert conflict_and_cheap.report.reasons == {"duplicate_event_conflict": 1, "below_floor_fraction": 1}
    assert replay.report is None and replay.accepted_before <= datetime.now(UTC)
    assert (duplicate_and_new.report.accepted, duplicate_and_new.report.duplicate) == (1, 1)
    assert stored == {"e1": 95.0, "e3": 90.0}
    assert sorted(recorded) == [("d1", 202), ("d2", 202), ("d3", 202)]
