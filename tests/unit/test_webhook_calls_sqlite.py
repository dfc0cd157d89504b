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


def test_a_field_given_under_another_name_beside_an_empty_one_is_looked_up_as_validated(sqlite_market):
    """The batch looks up the items and the floors of the days its rows name before validating
    them; both must read a field as validation does, where an empty value gives way to another
    name's (models.validation._pick). They read the empty one: the item "2" named by punk_id was
    refused as unknown, and the floor of a day named by ts was never read, so a sale at a tenth of
    it was stored."""
    session, _ = sqlite_market
    named_by_alias = {"event_id": "a1", "timestamp": "2024-01-02T12:00:00Z", "item_key": "", "punk_id": "2",
                      "price": 95.0}
    under_the_floor = {"event_id": "a2", "timestamp": "", "ts": "2024-01-02T12:00:00Z", "item_key": "1",
                       "price": 10.0}
    (outcome,) = ingest_calls(session, "cryptopunks", [a_call("d1", named_by_alias, under_the_floor)], 0.2)
    session.commit()

    assert outcome.report.accepted_event_ids == ["a1"]
    assert outcome.report.reasons == {"below_floor_fraction": 1}
    assert dict(session.exec(select(Sale.event_id, Sale.item_key)).all()) == {"a1": "2"}
