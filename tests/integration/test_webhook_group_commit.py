"""Group-committed webhook calls against real PostgreSQL: a batch of calls in one transaction
answers each call what the calls one after another would have (in-batch duplicates, conflicts
and replays included), a batch with a call the database refuses falls back to one transaction
per call, and concurrent HTTP calls each get their own report."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc as db_errors
from sqlmodel import select

from api import signing
from fairvalue import pipeline
from fairvalue.group_commit import GroupCommitter
from storage.db import session_scope
from storage.tables import RejectedSale, Sale, WebhookDelivery
from storage.webhook_batch import WebhookCall
from tests.realparts import waits_on_a_lock

pytestmark = pytest.mark.integration
SECRET = "test-secret"  # tests/conftest.py


SOLD_AT = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()  # one time: same event id, same content


def a_sale(event_id: str, price: float = 95.0, item: str = "17") -> dict:
    return {"event_id": event_id, "timestamp": SOLD_AT, "punk_id": item, "price_eth": price}


def a_call(sales: list[dict], signed_at: int | None = None, client: str = "test") -> WebhookCall:
    body = json.dumps(sales).encode()
    t = signed_at or int(time.time())
    return WebhookCall(sales, body, signing.delivery_digest(t, body), t, client)


def counts(outcome) -> tuple[int, int, int]:
    return outcome.report.accepted, outcome.report.duplicate, outcome.report.rejected


def deliveries_of(call: WebhookCall) -> list[tuple[str, int]]:
    with session_scope() as session:
        return [(r.outcome, r.status_code) for r in session.exec(
            select(WebhookDelivery).where(WebhookDelivery.signature_sha256 == call.digest)).all()]


def test_one_batch_answers_each_call_as_sequential_processing_would(seeded):
    tag = time.time_ns()
    stored_before = a_call([a_sale(f"gc-old-{tag}", price=90.0)])
    pipeline.ingest_webhook_calls([stored_before])
    first = a_call([a_sale(f"gc-a-{tag}"), a_sale(f"gc-b-{tag}")])
    same_again = a_call([a_sale(f"gc-a-{tag}")])
    other_content = a_call([a_sale(f"gc-b-{tag}", price=99.0)])
    replayed = first  # the very same delivery twice in one batch
    old_conflict = a_call([a_sale(f"gc-old-{tag}", price=91.0)])
    mixed = a_call([a_sale(f"gc-c-{tag}"), a_sale(f"gc-d-{tag}", item="99999")])

    outcomes = pipeline.ingest_webhook_calls([first, same_again, other_content, replayed, old_conflict, mixed])

    assert counts(outcomes[0]) == (2, 0, 0)
    assert counts(outcomes[1]) == (0, 1, 0)
    assert counts(outcomes[2]) == (0, 0, 1) and outcomes[2].report.reasons == {"duplicate_event_conflict": 1}
    assert outcomes[3].report is None and outcomes[3].accepted_before is not None
    assert counts(outcomes[4]) == (0, 0, 1)
    assert counts(outcomes[5]) == (1, 0, 1) and outcomes[5].report.reasons == {"unknown_item": 1}
    with session_scope() as session:
        prices = dict(session.exec(select(Sale.event_id, Sale.price).where(Sale.event_id.like(f"gc-%-{tag}"))).all())
        kept = session.exec(select(RejectedSale.event_id, RejectedSale.reason)
                            .where(RejectedSale.event_id.like(f"gc-%-{tag}"))).all()
    assert prices == {f"gc-old-{tag}": 90.0, f"gc-a-{tag}": 95.0, f"gc-b-{tag}": 95.0, f"gc-c-{tag}": 95.0}
    assert sorted(kept) == sorted([(f"gc-b-{tag}", "duplicate_event_conflict"),
                                   (f"gc-old-{tag}", "duplicate_event_conflict"),
                                   (f"gc-d-{tag}", "unknown_item")])
    # The replay itself is recorded by the handler (api/webhooks._refuse), not by the batch.
    assert deliveries_of(first) == [("accepted", 202)]
    assert deliveries_of(other_content) == deliveries_of(old_conflict) == [("conflict", 409)]
    # The whole batch again: every delivery is now a replay.
    assert all(o.accepted_before is not None for o in pipeline.ingest_webhook_calls([mixed, first]))


def test_a_call_the_database_refuses_fails_alone(seeded):
    tag = time.time_ns()
    good = [a_call([a_sale(f"gc-ok{i}-{tag}")]) for i in range(2)]
    poisoned = a_call([a_sale(f"gc-bad-{tag}")], client="nul\x00client")  # PostgreSQL text holds no NUL
    batches: list[int] = []

    def ingest_batch(calls):
        batches.append(len(calls))
        return pipeline.ingest_webhook_calls(calls)

    committer = GroupCommitter(ingest_batch, lambda c: pipeline.ingest_webhook_calls([c])[0])
    futures = committer.submit_all([good[0], poisoned, good[1]])

    assert counts(futures[0].result(60)) == counts(futures[2].result(60)) == (1, 0, 0)
    with pytest.raises(db_errors.DBAPIError):
        futures[1].result(60)
    assert batches == [3]  # tried together once, then each alone
    with session_scope() as session:
        stored = session.exec(select(Sale.event_id).where(Sale.event_id.like(f"gc-%-{tag}"))).all()
    assert sorted(stored) == sorted([f"gc-ok0-{tag}", f"gc-ok1-{tag}"])


@pytest.mark.usefixtures("leaves_nothing_queued")  # its follow-up: no worker of this file takes it
def test_concurrent_http_calls_get_their_own_reports(client):
    tag = time.time_ns()
    t = int(time.time())

    def post(payload, signed_at=t):
        body = json.dumps(payload).encode()
        r = client.post("/v1/webhooks/sales", content=body,
                        headers={signing.HEADER: signing.sign(SECRET, body, signed_at)})
        return r.status_code, r.json()

    distinct = [a_sale(f"gc-http{i}-{tag}") for i in range(12)]
    shared = a_sale(f"gc-shared-{tag}")  # the same event, four deliveries (signed at distinct times)
    contested = [a_sale(f"gc-contested-{tag}", price=p) for p in (95.0, 96.0)]
    jobs = [(s, t) for s in distinct] + [(shared, t - k) for k in range(4)] + [(s, t) for s in contested]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: post(*job), jobs))

    for status, body in answers[:12]:
        assert status == 202 and (body["accepted"], body["duplicate"]) == (1, 0), body
    shared_answers = sorted((b["accepted"], b["duplicate"]) for _, b in answers[12:16])
    assert shared_answers == [(0, 1), (0, 1), (0, 1), (1, 0)]
    assert sorted(status for status, _ in answers[16:]) == [202, 409]
    with session_scope() as session:
        assert len(session.exec(select(Sale.event_id).where(Sale.event_id.like(f"gc-%-{tag}"))).all()) == 14


def test_one_delivery_in_two_transactions_at_once_is_accepted_once(seeded):
    """Two API processes given the same delivery: the second waits for the first's commit and
    answers it as a replay, instead of both answering 202. The first commits only once the
    second's transaction is seen waiting on a lock: a second started after the commit would
    answer a replay too, without the race."""
    import threading

    from sqlalchemy import text

    from storage.webhook_calls import ingest_calls

    call = a_call([a_sale(f"twin-{time.time_ns()}")])
    first_in = threading.Event()
    outcomes: dict = {}

    def first() -> None:
        with session_scope() as session:
            outcomes["first"] = ingest_calls(session, "cryptopunks", [call], 0.2)[0]
            first_in.set()
            outcomes["second_waited"] = waits_on_a_lock(lambda: outcomes.get("second_pid"))

    def second() -> None:
        first_in.wait(30)
        with session_scope() as session:
            outcomes["second_pid"] = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            outcomes["second"] = ingest_calls(session, "cryptopunks", [call], 0.2)[0]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes["second_waited"], "the second transaction never waited on the first's lock"
    assert counts(outcomes["first"]) == (1, 0, 0)
    assert outcomes["second"].accepted_before is not None, outcomes["second"]
    assert deliveries_of(call) == [("accepted", 202)]


def test_a_batch_naming_more_items_than_postgresql_has_parameters_is_read_in_one_statement(seeded):
    """The items a batch names are looked up as one array parameter: as an IN list, 70,000
    distinct ids (7 calls of 10,000 sales) ran past the protocol's 65,535 parameters, and every
    call of the batch got a 503."""
    tag = time.time_ns()
    calls = [a_call([a_sale(f"wide-{tag}-{c}-{i}", item=str(100_000 + 10_000 * c + i)) for i in range(10_000)])
             for c in range(7)]
    calls[0].sales[0] = a_sale(f"wide-{tag}-known", item="17")
    outcomes = pipeline.ingest_webhook_calls(calls)
    assert [counts(o) for o in outcomes] == [(1, 0, 9_999)] + [(0, 0, 10_000)] * 6
    assert outcomes[1].report.reasons == {"unknown_item": 10_000}
