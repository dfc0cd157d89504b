"""The pure rules of a group-committed batch of webhook calls (storage/webhook_batch.py):
every call is told what processing the calls one after another, in arrival order, tells it."""

from __future__ import annotations

from datetime import UTC, datetime

from models.validation import FloorLookup, Reason, validate_batch
from storage.webhook_batch import (
    WebhookCall,
    claimed_sales,
    count_kept_before,
    every_sale_conflicts,
    first_claims,
    replays,
    settle,
)

NOW = datetime(2024, 1, 2, tzinfo=UTC)


def call(digest: str) -> WebhookCall:
    return WebhookCall(sales=[], body=b"{}", digest=digest, signed_at=0, client="test")


def sale(event_id: str, price: float = 90.0, item: str = "1") -> dict:
    return {"event_id": event_id, "timestamp": "2024-01-01T12:00:00Z", "item_key": item, "price": price}


def validated(*calls: list[dict]):
    return [validate_batch(rows, {"1", "2"}, FloorLookup({}), 0.2, NOW) for rows in calls]


def test_a_digest_already_accepted_or_seen_earlier_in_the_batch_is_a_replay():
    before = datetime(2024, 1, 1, tzinfo=UTC)
    found = replays([call("a"), call("b"), call("a"), call("c"), call("b"), call("c")], {"a": before}, NOW)
    assert found == {0: before, 2: before, 4: NOW, 5: NOW}


def test_the_first_call_claims_an_event_id_and_later_calls_see_a_duplicate_or_a_conflict():
    batches = validated([sale("e1"), sale("e2")], [sale("e1")], [sale("e1", price=95.0), sale("e3")])
    claims = first_claims(batches)
    assert claims == {"e1": 0, "e2": 0, "e3": 2}
    claimed = claimed_sales(batches, claims)
    assert [s.event_id for s in claimed] == ["e1", "e2", "e3"]
    inserted = {"e1", "e2", "e3"}
    settled = settle(batches, claims, inserted, {s.event_id: s.content_hash for s in claimed})

    first, same, other = (s.report for s in settled)
    assert (first.accepted, first.duplicate, first.rejected, first.accepted_event_ids) == (2, 0, 0, ["e1", "e2"])
    assert (same.accepted, same.duplicate, same.rejected) == (0, 1, 0)
    assert (other.accepted, other.duplicate, other.rejected) == (1, 0, 1)
    assert other.reasons == {Reason.DUPLICATE_CONFLICT: 1}
    assert settled[2].rejections[0].row["price"] == 95.0  # the later row is the one kept as rejected


def test_an_event_id_already_stored_is_judged_against_the_stored_content_for_every_call():
    batches = validated([sale("old", price=95.0)], [sale("old", price=90.0)])
    claims = first_claims(batches)
    stored_price_90 = batches[1].clean[0].content_hash  # stored before this batch, at 90
    settled = settle(batches, claims, inserted=set(), stored_hash={"old": stored_price_90})
    conflict, duplicate = (s.report for s in settled)
    assert (conflict.accepted, conflict.duplicate, conflict.rejected) == (0, 0, 1)
    assert every_sale_conflicts(conflict)
    assert (duplicate.accepted, duplicate.duplicate, duplicate.rejected) == (0, 1, 0)
    assert not every_sale_conflicts(duplicate)


def test_rows_refused_by_validation_stay_with_their_call_and_claim_nothing():
    batches = validated([sale("x", item="999")], [sale("x"), sale("x")])
    claims = first_claims(batches)
    assert claims == {"x": 1}
    settled = settle(batches, claims, {"x"}, {"x": batches[1].clean[0].content_hash})
    refused, accepted = (s.report for s in settled)
    assert refused.reasons == {Reason.UNKNOWN_ITEM: 1} and refused.accepted == 0
    assert (accepted.accepted, accepted.duplicate) == (1, 1)  # the second copy in its own call


def test_a_rejected_row_kept_before_the_batch_or_by_an_earlier_call_counts_as_kept_before():
    # Three calls each send the same row for an unknown item; the third also sends a new one.
    batches = validated([sale("u1", item="999")], [sale("u1", item="999")],
                        [sale("u1", item="999"), sale("u2", item="999")])
    settled = settle(batches, first_claims(batches), set(), {})
    u1, u2 = settled[2].rejections[0].row_hash, settled[2].rejections[1].row_hash
    count_kept_before(settled, kept_now={u1, u2})  # neither was kept before the batch
    assert [s.report.rejected_kept_before for s in settled] == [0, 1, 1]
    count_kept_before(settled, kept_now={u2})  # u1 was kept by an earlier batch
    assert [s.report.rejected_kept_before for s in settled] == [1, 1, 1]
