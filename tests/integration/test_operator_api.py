"""Operator endpoints: bearer token required; with it, requests, promotions and rollbacks work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery.signals import before_task_publish
from pydantic import SecretStr
from sqlalchemy import delete
from sqlmodel import select

from fairvalue.settings import get_settings
from tasks import queues
from tests.builders import champion_and_another, rejected_by_gates

# Its retrains, promotes and rollbacks publish to queues no worker of this file consumes.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("leaves_nothing_queued")]
TOKEN = "operator-test-token"


@pytest.fixture()
def operator_token(monkeypatch):
    monkeypatch.setattr(get_settings(), "operator_token", SecretStr(TOKEN))
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/v1/training-requests", "/v1/models/1/promote", "/v1/models/rollback"])
def test_operator_endpoints_refuse_without_a_valid_token(client, operator_token, path):
    missing = client.post(path, json={"reason": "x"})
    wrong = client.post(path, json={"reason": "x"}, headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert wrong.json()["error"] == "invalid operator token"


def test_operator_api_is_off_without_a_configured_token(client):
    response = client.post("/v1/training-requests", json={"reason": "x"}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert "FAIRVALUE_OPERATOR_TOKEN" in response.json()["error"]


@pytest.fixture()
def sent_tasks():
    """(task name, kwargs, queue) of each message this process publishes to the broker."""
    sent = []

    def record(sender=None, body=None, routing_key=None, **_):
        sent.append((sender, body[1], routing_key))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def test_operator_can_enqueue_promote_and_roll_back(client, operator_token, broker, sent_tasks):
    created = client.post("/v1/training-requests", json={"reason": "api test", "params": {"max_iter": 5}},
                          headers=operator_token)
    assert created.status_code == 202, created.text
    listed = client.get("/v1/training-requests").json()["training_requests"]
    assert any(r["id"] == created.json()["id"] and r["reason"] == "operator: api test" for r in listed)
    page = client.get("/v1/training-requests?limit=1").json()  # paged as /decisions is
    assert page["total"] >= len(listed) and page["next_offset"] == (1 if page["total"] > 1 else None), page
    last = client.get(f"/v1/training-requests?limit=1&offset={page['total'] - 1}").json()
    assert len(last["training_requests"]) == 1 and last["next_offset"] is None, last

    bad = client.post("/v1/training-requests", json={"reason": "x", "params": {"nope": 1}}, headers=operator_token)
    assert bad.status_code == 422 and "unknown training params" in bad.json()["error"]
    # A known parameter with a wrong type or value is refused too, by name, and nothing is queued.
    for params, reason in (({"max_iter": "300"}, "max_iter: Input should be a valid integer"),
                           ({"band_method": "wide"}, "band_method: Input should be 'premium', 'spread' or 'averaged'"),
                           ({"band_low": 0.6, "learning_rate": 0}, "learning_rate: Input should be greater than 0")):
        refused = client.post("/v1/training-requests", json={"reason": "refused params", "params": params},
                              headers=operator_token)
        assert refused.status_code == 422 and reason in refused.json()["error"], refused.text
    # JSON's Infinity is no setting: stored, it was a 500 on PostgreSQL and broke the listing on SQLite.
    for raw, reason in ((b'{"reason": "refused params", "params": {"l2_regularization": Infinity}}',
                         "l2_regularization: Input should be a finite number"),
                        (b'{"reason": "refused params", "params": {"max_leaf_nodes": 100000000000000000000}}',
                         "max_leaf_nodes: Input should be less than or equal to 10000")):
        refused = client.post("/v1/training-requests", content=raw,
                              headers={**operator_token, "Content-Type": "application/json"})
        assert refused.status_code == 422 and reason in refused.json()["error"], refused.text
    listed = client.get("/v1/training-requests?limit=500").json()["training_requests"]
    assert not any(r["reason"] == "operator: refused params" for r in listed)
    assert client.post("/v1/models/999999/promote", headers=operator_token).status_code == 404
    for bad in ("abc", "%C2%B2"):  # "²" is a digit to str.isdigit, not to int()
        assert client.post(f"/v1/models/{bad}/promote", headers=operator_token).status_code == 400, bad

    champion, other = champion_and_another()
    before_promote = datetime.now(UTC)
    promoted = client.post(f"/v1/models/{other}/promote", json={"reason": "api"}, headers=operator_token)
    assert promoted.status_code == 200 and promoted.json()["champion"] == other
    rolled = client.post("/v1/models/rollback", json={"reason": "api"}, headers=operator_token)
    assert rolled.status_code == 200 and rolled.json()["champion"] == champion
    trail = client.get("/v1/models", headers=operator_token).json()["decisions"][:2]
    assert [(d["decision"], d["by"]) for d in trail] == [("rollback", "operator"), ("promote", "operator")]
    assert all(d["numbers"]["operator"] == d["operator"] == "bootstrap" for d in trail)  # which token acted
    assert "by operator (bootstrap)" in client.get("/models", headers=operator_token).text  # the page too
    # Each asked for a nowcast of this collection by name, not of whatever a worker defaults to
    # (a worker of another test may already have consumed the messages, so they are seen as sent).
    nowcasts = [(name, kwargs, queue) for name, kwargs, queue in sent_tasks if name == "fairvalue.nowcast"]
    assert [(name, kwargs["collection"], queue) for name, kwargs, queue in nowcasts] == [
        ("fairvalue.nowcast", "cryptopunks", queues.NOWCAST)] * 2
    # ... saying when, so a snapshot read after the change serves them (tasks/nowcast.py)
    assert all(datetime.fromisoformat(kwargs["requested_at"]) > before_promote for _, kwargs, _ in nowcasts)


def test_with_the_broker_down_a_committed_change_answers_what_was_not_sent(client, operator_token, monkeypatch):
    """The change is committed before its message is sent; an unreachable broker does not turn it
    into a 500 that a client would retry (a second training request, an "unchanged" promote)."""
    import socket
    import time

    import tasks.app
    import tasks.lifecycle
    from storage.db import session_scope
    from storage.tables import TrainingRequest

    with socket.socket() as s:  # a port nothing listens on: a real connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    unreachable = tasks.app.create_app(get_settings().model_copy(update={"broker_url": dead}))
    monkeypatch.setattr(tasks.app, "app", unreachable)
    monkeypatch.setattr(tasks.lifecycle, "app", unreachable)

    began = time.monotonic()
    created = client.post("/v1/training-requests", json={"reason": "broker down"}, headers=operator_token)
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["published"] is False and "the training sweep (hourly) publishes it" in body["not_sent"]
    with session_scope() as session:
        stored = session.get(TrainingRequest, body["id"])
        assert stored.state == "queued" and stored.published_at is None  # the sweep's to republish

    champion, other = champion_and_another()
    try:
        promoted = client.post(f"/v1/models/{other}/promote", json={"reason": "broker down"}, headers=operator_token)
        assert promoted.status_code == 200 and promoted.json()["changed"] is True, promoted.text
        assert promoted.json()["nowcast"].startswith("not requested (")
    finally:
        rolled = client.post("/v1/models/rollback", json={"reason": "broker down"}, headers=operator_token)
    assert rolled.status_code == 200 and rolled.json()["champion"] == champion, rolled.text
    assert rolled.json()["nowcast"].startswith("not requested (")
    assert time.monotonic() - began < 60  # the publish retries give up; the API does not hang on them


def test_a_retried_training_request_with_its_idempotency_key_is_recorded_once(client, operator_token, broker):
    """A client that timed out and retries sends the same Idempotency-Key: it gets the first
    request back, not a second training; the key on another request is a 409, and a malformed
    key a 400."""
    import time

    key = f"retry-{time.time_ns()}"
    asked = {"reason": "idempotent", "params": {"max_iter": 5}}
    headers = {**operator_token, "Idempotency-Key": key}
    first = client.post("/v1/training-requests", json=asked, headers=headers)
    again = client.post("/v1/training-requests", json=asked, headers=headers)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert "replayed" not in first.json()
    listed = client.get("/v1/training-requests?limit=500").json()["training_requests"]
    assert sum(r["reason"] == "operator: idempotent" for r in listed) == 1
    other = client.post("/v1/training-requests", json={**asked, "params": {"max_iter": 6}}, headers=headers)
    assert other.status_code == 409 and "already names request" in other.json()["error"]
    bad = client.post("/v1/training-requests", json=asked, headers={**operator_token, "Idempotency-Key": "a b"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]

    # A retry of a request that no longer waits sends no second message (which would mark it
    # published again); one still queued is sent again, as its first send may have failed.
    from storage.db import session_scope
    from storage.tables import TrainingRequest

    marked = datetime(2020, 1, 1, tzinfo=UTC)
    with session_scope() as session:
        request = session.get(TrainingRequest, first.json()["id"])
        request.state, request.published_at = "done", marked
        session.add(request)
    done = client.post("/v1/training-requests", json=asked, headers=headers)
    assert done.status_code == 202 and done.json()["state"] == "done" and done.json()["replayed"] is True
    with session_scope() as session:
        assert session.get(TrainingRequest, first.json()["id"]).published_at == marked


def test_a_rollback_retried_with_its_idempotency_key_answers_200_unchanged(client, operator_token, broker):
    """A client whose rollback's answer was lost retries with the same Idempotency-Key: it used to
    get 409 "nothing to roll back to", as if the rollback had failed, where a retried promote answers
    200 with changed false. A retry without the key cannot be told from a second rollback: still 409."""
    import time

    champion, other = champion_and_another()
    assert client.post(f"/v1/models/{other}/promote", json={"reason": "to roll back"},
                       headers=operator_token).status_code == 200
    headers = {**operator_token, "Idempotency-Key": f"rollback-{time.time_ns()}"}
    first = client.post("/v1/models/rollback", json={"reason": "lost answer"}, headers=headers)
    again = client.post("/v1/models/rollback", json={"reason": "lost answer"}, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert (first.json()["champion"], first.json()["rolled_back_from"], first.json()["changed"]) == (
        champion, other, True)
    assert "nowcast" in first.json() and "replayed" not in first.json()
    assert again.json() == {"champion": champion, "rolled_back_from": other, "changed": False, "replayed": True}
    trail = client.get("/v1/models", headers=operator_token).json()["decisions"]
    assert [(d["decision"], d["reason"]) for d in trail].count(("rollback", "lost answer")) == 1  # rolled back once
    other_reason = client.post("/v1/models/rollback", json={"reason": "another"}, headers=headers)
    assert other_reason.status_code == 409 and "already names the rollback" in other_reason.json()["error"]
    keyless = client.post("/v1/models/rollback", json={"reason": "lost answer"}, headers=operator_token)
    assert keyless.status_code == 409 and "nothing to roll back to" in keyless.json()["error"]


def test_a_body_key_it_does_not_take_or_an_over_long_reason_is_a_422_and_nothing_is_queued(client, operator_token):
    """A misspelled key ("parms") was ignored, so the request trained with the defaults; a reason
    of 20,000 characters was cut to 500 without a word. Both are refused, by name, and nothing is
    recorded."""
    from fairvalue.lifecycle import MAX_REASON_LENGTH

    before = client.get("/v1/training-requests?limit=500").json()["training_requests"]
    misspelled = client.post("/v1/training-requests", json={"reason": "typo", "parms": {"max_iter": 300}},
                             headers=operator_token)
    assert misspelled.status_code == 422, misspelled.text
    assert "'parms'" in misspelled.json()["error"] and "params" in misspelled.json()["error"]
    extra = client.post("/v1/models/rollback", json={"reason": "x", "force": True}, headers=operator_token)
    assert extra.status_code == 422 and "'force'" in extra.json()["error"], extra.text  # only promote takes it
    not_bool = client.post("/v1/models/1/promote", json={"reason": "x", "force": "yes"}, headers=operator_token)
    assert not_bool.status_code == 422 and "force must be true or false" in not_bool.json()["error"], not_bool.text
    for path in ("/v1/training-requests", "/v1/models/rollback"):
        long = client.post(path, json={"reason": "y" * 20_000}, headers=operator_token)
        assert long.status_code == 422, (path, long.text[:300])
        assert f"at most {MAX_REASON_LENGTH} characters" in long.json()["error"], long.text[:300]
    at_limit = client.post("/v1/training-requests", json={"reason": "z" * MAX_REASON_LENGTH}, headers=operator_token)
    assert at_limit.status_code == 202, at_limit.text[:300]
    after = client.get("/v1/training-requests?limit=500").json()["training_requests"]
    assert [r["id"] for r in after if r["id"] not in {b["id"] for b in before}] == [at_limit.json()["id"]]
    assert after[0]["reason"] == "operator: " + "z" * MAX_REASON_LENGTH  # kept whole, not cut
    # The OpenAPI document states the same limit and that no other key is taken.
    body = client.get("/openapi.json").json()["paths"]["/v1/collections/{slug}/training-requests"]["post"]
    schema = body["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["reason"]["maxLength"] == MAX_REASON_LENGTH
    assert schema["additionalProperties"] is False


def test_a_training_request_while_training_is_paused_says_so_and_is_not_sent(client, operator_token, broker,
                                                                              sent_tasks):
    """The operator review: the answer said published while the paused loop would only skip it.
    The request is kept, unpublished, for `fairvalue resume training` (or the sweep) to publish."""
    from fairvalue import lifecycle
    from storage.db import session_scope
    from storage.tables import TrainingRequest

    lifecycle.set_paused("training", True, "api test")
    try:
        created = client.post("/v1/training-requests", json={"reason": "while paused"}, headers=operator_token)
    finally:
        lifecycle.set_paused("training", False)
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["published"] is False and "paused" in body["paused"], body
    assert not [s for s in sent_tasks if s[0] == "fairvalue.training.train"]
    with session_scope() as session:
        request = session.get(TrainingRequest, body["id"])
        assert (request.state, request.published_at) == ("queued", None)
    assert body["id"] in lifecycle.requests_to_republish()


def test_promoting_a_version_the_gates_rejected_is_refused_unless_forced(client, operator_token, broker):
    """It went through without a word. Now a 409 names the gates' decision and how to override;
    "force": true promotes it, and the promotion's record says which decision it overrode."""
    champion, other = champion_and_another()
    with rejected_by_gates(other, "MAPE 0.41 > champion's 0.22.") as decision_id:  # a reason ending in a stop
        refused = client.post(f"/v1/models/{other}/promote", json={"reason": "try"}, headers=operator_token)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert f"version {other} was rejected by the gates on " in error, error
        assert f"(decision {decision_id}): MAPE 0.41 > champion's 0.22" in error, error
        assert error.endswith('0.22; send "force": true to promote it anyway'), error  # no ".;"
        assert client.get("/v1/models").json()["aliases"]["champion"] == champion  # nothing changed

        forced = client.post(f"/v1/models/{other}/promote", json={"reason": "I know", "force": True},
                             headers=operator_token)
        try:
            assert forced.status_code == 200 and forced.json()["champion"] == other, forced.text
            assert forced.json()["forced_over_decision"] == decision_id
            latest = client.get("/v1/models").json()["decisions"][0]
            assert (latest["decision"], latest["by"], latest["contender"]) == ("promote", "operator", other)
            assert latest["numbers"]["forced_over"]["decision_id"] == decision_id
            assert latest["numbers"]["forced_over"]["reason"] == "MAPE 0.41 > champion's 0.22."
        finally:
            client.post("/v1/models/rollback", json={"reason": "forced test over"}, headers=operator_token)


def test_a_replay_of_a_decided_training_request_answers_its_result_and_why_it_was_not_sent(
        client, operator_token, broker):
    """A retry of a request the gates already decided answered only published: false. It answers
    where the request is: decided, the version trained, the gates' verdict, and why nothing was sent."""
    import time

    from storage.db import session_scope
    from storage.tables import ModelVersion, PromotionDecision, TrainingRequest

    headers = {**operator_token, "Idempotency-Key": f"decided-{time.time_ns()}"}
    asked = {"reason": "replayed after its verdict", "params": {"max_iter": 5}}
    first = client.post("/v1/training-requests", json=asked, headers=headers)
    assert first.status_code == 202, first.text
    champion = client.get("/v1/models").json()["aliases"]["champion"]
    with session_scope() as session:  # as a worker leaves it: trained, then judged by the gates
        request = session.get(TrainingRequest, first.json()["id"])
        version = session.exec(select(ModelVersion).where(ModelVersion.collection_id == request.collection_id,
                                                          ModelVersion.version == champion)).one()
        request.state, request.model_version_id, request.claimed_by = "decided", version.id, "w@host:1"
        session.add(request)
        decision = PromotionDecision(collection_id=request.collection_id, training_request_id=request.id,
                                     contender_version_id=version.id, decision="reject", decided_by="gates",
                                     reason="not better than the champion", numbers={})
        session.add(decision)
        session.flush()
        decision_id = decision.id
    try:
        again = client.post("/v1/training-requests", json=asked, headers=headers)
        assert again.status_code == 202, again.text
        answer = again.json()
        assert {k: answer.get(k) for k in ("id", "state", "published", "replayed", "model_version")} == {
            "id": first.json()["id"], "state": "decided", "published": False, "replayed": True,
            "model_version": champion}, answer
        assert answer["decision"] == {"id": decision_id, "decision": "reject", "reason": "not better than the champion"}
        assert answer["not_published"] == (f"request {first.json()['id']} is decided: a replay sends it only while "
                                            "it waits"), answer
    finally:
        with session_scope() as session:
            session.execute(delete(PromotionDecision.__table__).where(PromotionDecision.id == decision_id))


def test_public_reads_hide_operators_and_workers_hosts_from_callers_without_a_token(client, operator_token):
    """Who paused a loop, who promoted and which host and pid claimed a training request were on
    every public GET. A caller without a valid operator token gets the same keys with "hidden"."""
    from typer.testing import CliRunner

    from fairvalue import lifecycle
    from fairvalue.cli import app as cli
    from storage.db import session_scope
    from storage.tables import TrainingRequest

    champion, other = champion_and_another()
    assert client.post(f"/v1/models/{other}/promote", json={"reason": "who"}, headers=operator_token).status_code == 200
    client.post("/v1/models/rollback", json={"reason": "who"}, headers=operator_token)
    asked = client.post("/v1/training-requests", json={"reason": "who claimed"}, headers=operator_token).json()["id"]
    with session_scope() as session:  # as a worker claims it: its host, pid and claim
        request = session.get(TrainingRequest, asked)
        request.claimed_by = "trainer@secret-host/4242/abcd1234"
        session.add(request)
    assert CliRunner().invoke(cli, ["pause", "monitor", "--reason", "who paused"]).exit_code == 0
    try:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):  # a wrong token is a public caller
            trail = client.get("/v1/models", headers=headers).json()["decisions"][:2]
            assert [(d["by"], d["operator"], d["numbers"]["operator"]) for d in trail] == [
                ("operator", "hidden", "hidden")] * 2, trail
            decisions = client.get("/v1/collections/cryptopunks/decisions", headers=headers).json()["decisions"][:2]
            assert [d["operator"] for d in decisions] == ["hidden"] * 2
            listed = {r["id"]: r for r in client.get("/v1/training-requests", headers=headers).json()[
                "training_requests"]}
            assert (listed[asked]["claimed_by"], listed[asked]["trigger"]) == ("hidden", {"operator": "hidden"})
            queue = client.get("/v1/queue", headers=headers).json()
            paused = {p["loop"]: p for p in queue["paused_loops"]}["monitor"]
            assert paused["by"] == "hidden" and " by " not in paused["text"], paused
            assert all(w == "hidden" for w in queue["workers"] or [])
            for page in ("/models", "/queue"):
                text = client.get(page, headers=headers).text
                assert "bootstrap" not in text and "secret-host" not in text and "cli:" not in text, page
                assert "(hidden)" not in text and "by hidden" not in text and ">hidden<" not in text, page  # left out
        shown = client.get("/v1/training-requests", headers=operator_token).json()["training_requests"]
        assert {r["id"]: r for r in shown}[asked]["claimed_by"] == "trainer@secret-host/4242/abcd1234"
        assert client.get("/v1/models", headers=operator_token).json()["decisions"][0]["operator"] == "bootstrap"
        assert "@" in {p["loop"]: p for p in client.get("/v1/queue", headers=operator_token).json()[
            "paused_loops"]}["monitor"]["by"]
        assert "secret-host" in client.get("/queue", headers=operator_token).text
    finally:
        lifecycle.set_paused("monitor", False)
