"""Operator tokens (created, listed and revoked by the CLI; stored hashed), the per-client rate
limit of public reads (Redis-backed here, since the broker is Redis), the body size limit and
CORS being off unless configured."""

from __future__ import annotations

import hashlib
import time

import pytest
from sqlmodel import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from fairvalue.cli import app as cli
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.tables import ApiToken
from tests.realparts import waits_on_a_lock

pytestmark = pytest.mark.integration
runner = CliRunner()
C = "/v1/collections/cryptopunks"


def _create(name: str) -> str:
    result = runner.invoke(cli, ["tokens", "create", "--name", name])
    assert result.exit_code == 0, result.output
    assert "shown only now" in result.stderr  # the token alone on stdout, for TOKEN=$(...)
    assert len(result.stdout.split()) == 1, result.stdout
    return result.stdout.strip()


@pytest.mark.usefixtures("leaves_nothing_queued")  # its training request: no worker here trains it
def test_operator_tokens_no_token_revoked_token_valid_token(client, broker, tokens_to_revoke):
    tokens_to_revoke.append("alice-test")  # revoked at teardown should an assert below fail before the revoke
    token = _create("alice-test")
    with session_scope() as session:
        row = session.exec(select(ApiToken).where(ApiToken.name == "alice-test")).one()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest() and token not in row.token_sha256
    assert runner.invoke(cli, ["tokens", "create", "--name", "alice-test"]).exit_code != 0  # names are unique
    body = {"reason": "token test", "params": {"max_iter": 5}}
    path = f"{C}/training-requests"

    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer fv_wrong"}).status_code == 401
    ok = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 202, ok.text
    listed = runner.invoke(cli, ["tokens", "list"]).output
    assert "alice-test" in listed and token not in listed

    assert runner.invoke(cli, ["tokens", "revoke", "alice-test"]).exit_code == 0
    revoked = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and revoked.json()["error"].startswith("operator token 'alice-test' was revoked")
    assert runner.invoke(cli, ["tokens", "revoke", "alice-test"]).exit_code == 1  # nothing active by that name
    # No active token and no bootstrap token: every operator call is a 401 that says why (it read
    # "operator API disabled", as if switched off) and how to create one.
    assert "no operator token is active: create one with" in revoked.json()["error"]
    other = client.post(path, json=body, headers={"Authorization": "Bearer fv_wrong"})
    assert other.status_code == 401
    assert other.json()["error"].startswith("no active operator token: every token was revoked; create one with")


def test_public_reads_are_rate_limited_per_client(seeded, broker, monkeypatch):
    from api.app import create_app

    monkeypatch.setattr(get_settings(), "rate_limit_per_minute", 5)
    if time.time() % 60 > 55:  # keep the six requests inside one fixed window
        time.sleep(61 - time.time() % 60)
    with TestClient(create_app()) as c:
        codes = [c.get(f"{C}/items/1").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        limited = c.get("/v1/items/2")
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["status"] == 429
        assert c.get("/c/cryptopunks/performance").status_code == 429  # the pages run the same reads
        page = c.get("/c/cryptopunks/performance", headers={"Accept": "text/html"})  # a browser: the site's page
        assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
        assert "Too many requests" in page.text and 1 <= int(page.headers["retry-after"]) <= 60
        cards = c.get("/c/cards/backtest", headers={"Accept": "text/html"}).text  # its own collection's links
        assert 'class="collection">cards<' in cards and 'href="/c/cards/performance"' in cards
        assert c.get("/healthz").status_code == 200 and c.get("/static/site.css").status_code == 200
    assert broker.keys("fairvalue:ratelimit:*")  # counted in Redis, shared by every API process


def test_body_limit_and_cors_off_by_default(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "max_body_bytes", 1000)
    big = client.post(f"{C}/training-requests", content=b"x" * 2000, headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"].startswith("request body larger")

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(5):
            yield b"y" * 400

    streamed = client.post("/v1/webhooks/sales", content=chunks())
    assert streamed.status_code == 413
    preflight = client.options(f"{C}/signals", headers={"Origin": "https://example.com",
                                                        "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_when_origins_are_configured(seeded, monkeypatch):
    from api.app import create_app

    monkeypatch.setattr(get_settings(), "cors_origins", "https://app.example.com")
    with TestClient(create_app()) as c:
        response = c.get(f"{C}/items/1", headers={"Origin": "https://app.example.com"})
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        other = c.get(f"{C}/items/1", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        # the headers the API reads pass a preflight, and a script may read the ones it answers with
        preflight = c.options(f"{C}/training-requests", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key,if-none-match"})
        assert preflight.status_code == 200, preflight.text
        exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
        assert {"etag", "retry-after", "x-snapshot-id"} <= exposed


def test_cors_headers_are_on_a_429_and_a_413_and_a_head_passes_a_preflight(seeded, monkeypatch):
    """CORS sat inside the limits, so their 429 and 413 had no Access-Control-Allow-Origin: a
    browser's script got a CORS error, not the 429 and the Retry-After the API exposes for it. And a
    HEAD with If-None-Match (a snapshot's headers) failed its preflight: HEAD was not allowed."""
    from api.app import create_app

    origin = {"Origin": "https://app.example.com"}
    monkeypatch.setattr(get_settings(), "cors_origins", "https://app.example.com")
    monkeypatch.setattr(get_settings(), "rate_limit_per_minute", 1)
    monkeypatch.setattr(get_settings(), "max_body_bytes", 1000)
    with TestClient(create_app()) as c:
        preflight = c.options(f"{C}/snapshots/published", headers={
            **origin, "Access-Control-Request-Method": "HEAD", "Access-Control-Request-Headers": "if-none-match"})
        assert preflight.status_code == 200, preflight.text
        limited = next(r for r in (c.get(f"{C}/items/1", headers=origin) for _ in range(2)) if r.status_code == 429)
        assert limited.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "retry-after" in limited.headers["access-control-expose-headers"].lower()
        big = c.post(f"{C}/training-requests", content=b"x" * 2000,
                     headers={**origin, "Content-Type": "application/json"})
        assert big.status_code == 413 and big.headers["access-control-allow-origin"] == "https://app.example.com"


def test_two_tokens_created_under_one_name_at_once_refuse_the_second(database):
    """Both calls look the name up, find nothing, and insert: the second's insert waits on the first's
    row in the name's unique index, then broke on it, a traceback from `tokens create`. It is a
    refusal naming the clash, and the first call's token stands."""
    import threading

    import sqlalchemy as sa
    from sqlmodel import Session

    from storage import tokens
    from storage.db import get_engine

    name = f"race-{time.time_ns()}"
    first = Session(get_engine())
    tokens.create(first, name)  # inserted, not committed: the second call's look-up does not see it
    outcome: dict[str, str] = {}
    pids: list[int] = []

    def second() -> None:
        with Session(get_engine()) as session:
            pids.append(session.execute(sa.text("SELECT pg_backend_pid()")).scalar())
            try:
                tokens.create(session, name)
                session.commit()
                outcome["created"] = "yes"
            except ValueError as exc:
                outcome["refused"] = str(exc)

    thread = threading.Thread(target=second)
    thread.start()
    # The first commits once the second's insert waits on its row (else no race was run).
    assert waits_on_a_lock(lambda: pids[0] if pids else None), "the second insert never waited on the first's row"
    first.commit()
    first.close()
    thread.join(30)
    with session_scope() as session:
        held = session.exec(select(ApiToken).where(ApiToken.name == name)).all()
        tokens.revoke(session, name)  # a later file's test needs no token to be active
    assert "at the same moment" in outcome.get("refused", ""), outcome
    assert len(held) == 1
