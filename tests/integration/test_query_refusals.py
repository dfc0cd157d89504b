"""Every route refuses a query parameter it does not take: a 400 naming it and the closest one it
takes, where it was answered as if the parameter were absent (?limt=5 gave the default 50)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlmodel import select
from starlette.routing import Route

from api import signing, webhooks
from api.app import app
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.tables import Sale, WebhookDelivery

pytestmark = pytest.mark.integration
SECRET = "test-secret"  # tests/conftest.py
PATH_DEFAULTS = {"item_id": "7804", "slug": "cryptopunks", "snapshot": "published", "version": "1"}


@pytest.fixture()
def operator(monkeypatch):
    monkeypatch.setattr(get_settings(), "operator_token", SecretStr("query-refusals-token"))
    return {"Authorization": "Bearer query-refusals-token"}


def _concrete(route: Route) -> str:
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", PATH_DEFAULTS[name])
    return path


def test_every_route_refuses_a_query_parameter_it_does_not_take(client, operator):
    decisions = client.get("/v1/collections/cryptopunks/decisions").json()["total"]
    for route in (r for r in app.routes if isinstance(r, Route)):
        for method in sorted(route.methods - {"HEAD"}):
            body = b'{"reason": "query refusals"}'
            headers = dict(operator)
            if route.endpoint in (webhooks.receive_sales, webhooks.receive_listings):
                headers[signing.HEADER] = signing.sign(SECRET, body)
            response = client.request(method, f"{_concrete(route)}?limt=5", content=body, headers=headers)
            where = (method, route.path, response.text[:300])
            assert response.status_code == 400, where
            error = response.json()["error"]
            assert error.startswith("unknown query parameter 'limt'"), where
            assert ("did you mean 'limit'?" in error) == ("limit" in (getattr(route, "query_names", None) or ())), where
    # Refused before anything was done: the promote and the rollback above changed nothing.
    assert client.get("/v1/collections/cryptopunks/decisions").json()["total"] == decisions


def test_what_a_route_takes_it_still_reads(client):
    page = client.get("/v1/collections/cryptopunks/signals?limit=2&min_deviation=0")
    assert page.status_code == 200 and len(page.json()["signals"]) <= 2
    refused = client.get("/v1/collections/cryptopunks/signals?limit=2&min_deviaton=0.5")
    assert refused.status_code == 400
    assert refused.json()["error"] == ("unknown query parameter 'min_deviaton' (did you mean 'min_deviation'?); it "
                                       "takes signal, type, trait, min_deviation, limit and cursor")
    assert client.get("/v1/valuations?ids=7804&id=1").json()["error"].startswith(
        "unknown query parameter 'id' (did you mean 'ids'?)")


def test_a_page_refuses_it_with_a_page(client):
    for url, hint in (("/performance?form=2021-10-01", "from"), ("/c/cryptopunks/items/7804?prise=4000", "price"),
                      ("/models?x=1", None)):
        response = client.get(url, headers={"Accept": "text/html"})
        assert response.status_code == 400 and response.headers["content-type"].startswith("text/html"), url
        assert "unknown query parameter" in response.text, url
        assert hint is None or f"did you mean &#39;{hint}&#39;?" in response.text, url


def test_a_signed_webhook_call_with_one_is_refused_and_recorded_and_nothing_is_stored(client):
    event_id = f"query-refusal-{time.time_ns()}"
    body = json.dumps({"event_id": event_id, "timestamp": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
                       "item_id": "17", "price": 95.0}).encode()
    t = int(time.time())
    response = client.post("/v1/webhooks/sales?collection=cards", content=body,
                           headers={signing.HEADER: signing.sign(SECRET, body, t)})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unknown query parameter 'collection'; it takes none"
    with session_scope() as session:
        delivery = session.exec(select(WebhookDelivery).where(
            WebhookDelivery.signature_sha256 == signing.delivery_digest(t, body))).one()
        stored = session.exec(select(Sale).where(Sale.event_id == event_id)).first()
    assert (delivery.outcome, delivery.status_code, delivery.accepted_signature) == \
        ("unknown_query_parameter", 400, None)
    assert stored is None
