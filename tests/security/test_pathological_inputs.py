"""Hostile input on every route: SQL in every query and path parameter of every GET route,
huge and deeply nested JSON, bodies that are not UTF-8. Never a 500; every refusal is a 4xx
JSON {"error", "status"}; the database is untouched afterwards."""

from __future__ import annotations

import inspect
import json
import re
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import select
from starlette.routing import Route

from api import signing
from api.app import app
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.tables import Item

pytestmark = pytest.mark.integration
SECRET = "test-secret"

# Path parameters get a valid value when another parameter is under attack.
PATH_DEFAULTS = {"item_id": "1", "slug": "cryptopunks", "snapshot": "published", "version": "1"}
# How handlers read query parameters (api/deps.py helpers, or query_params directly).
PARAM_READ = re.compile(r'(?:str_param|int_param|float_param|bool_param|query_value)\(request, "(\w+)"'
                        r'|query_params\.get\("(\w+)"')


def query_params(route: Route) -> list[str]:
    """Every query parameter the route's handler reads, found in its source."""
    source = inspect.getsource(route.endpoint)
    return sorted({a or b for a, b in PARAM_READ.findall(source)})


HOSTILE = [
    "1' OR '1'='1",
    "1; DROP TABLE items; --",
    "1 UNION SELECT usename, passwd FROM pg_shadow --",
    "\x00",
    "1\x00' OR 1=1",
    "%",
    "%ff%fe",
    "\u202e\ufeff🦄",
    "a" * 5000,
    ",".join(["1"] * 999) + ",1' OR '1'='1",
    "../../../../etc/passwd",
    "NaN",
    "99999999999999999999999",
    "-99999999999999999999999",
    "2021-13-45T99:99:99",
]


def get_routes() -> list[Route]:
    return [r for r in app.routes if isinstance(r, Route) and "GET" in (r.methods or ())]


def test_every_get_route_is_covered():
    """Each handler that reads query parameters has them found (a new way of reading them must be
    taught to PARAM_READ), and every path parameter has a default."""
    for route in get_routes():
        source = inspect.getsource(route.endpoint)
        if "query_params" in source or "_param(request" in source or "query_value(request" in source:
            assert query_params(route), route.path
        assert set(route.param_convertors) <= set(PATH_DEFAULTS), route.path
    assert query_params(next(r for r in get_routes() if r.path == "/v1/valuations")) == ["ids"]


def _urls(payload: str):
    enc = quote(payload, safe="")
    for route in get_routes():
        base = route.path
        for name in route.param_convertors:
            yield base.replace("{" + name + "}", enc)  # hostile path parameter
            base = base.replace("{" + name + "}", PATH_DEFAULTS[name])
        for name in query_params(route):
            yield f"{base}?{name}={enc}"


def _concrete(route: Route) -> str:
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", PATH_DEFAULTS[name])
    return path


def assert_json_refusal_or_ok(response):
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        if response.headers.get("content-type", "").startswith("text/html"):  # a web page answers in HTML
            assert f"{response.status_code} " in response.text, response.text[:300]
            return
        body = response.json()
        assert body["status"] == response.status_code and body["error"], body


@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_query_and_path_parameters(client, payload):
    for url in _urls(payload):
        assert_json_refusal_or_ok(client.get(url))


def test_unexpected_and_hostile_parameter_names(client):
    enc = quote("1' OR '1'='1\x00", safe="")
    for route in get_routes():
        assert_json_refusal_or_ok(client.get(f"{_concrete(route)}?unexpected={enc}&{enc}={enc}"))


def test_raw_bytes_that_are_not_utf8_in_the_url(client):
    for url in ("/v1/items/%ff%fe", "/v1/valuations?ids=%ff,%c3", "/v1/training-requests?state=%ff",
                "/v1/collections/%ff%00/signals?signal=%ff"):
        assert_json_refusal_or_ok(client.get(url))


def _item_count() -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Item)).one()


def test_the_database_is_untouched(client):
    # Other tests may have added a card collection beside the punks: compare before with after.
    before = _item_count()
    assert before >= 10_000
    for payload in HOSTILE[:4]:
        for url in _urls(payload):
            client.get(url)
    assert _item_count() == before


def signed(client, body: bytes):
    return client.post("/v1/webhooks/sales", content=body, headers={signing.HEADER: signing.sign(SECRET, body)})


@pytest.fixture()
def operator(monkeypatch):
    monkeypatch.setattr(get_settings(), "operator_token", SecretStr("op-token"))
    return {"Authorization": "Bearer op-token"}


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


BAD_BODIES = {
    "deep array": (nested(200_000), 400),  # 400 kB, under the body limit
    "deep inside a sale": (json.dumps({"event_id": "deep", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1",
                                       "price_eth": 1.0, "extra": json.loads(nested(900))}).encode(), 400),
    "not utf-8": (b'{"event_id": "\xff\xfe", "punk_id": "1"}', 400),
    "latin-1": ('{"event_id": "caf\u00e9"}'.encode("latin-1"), 400),
    "nul bytes": (b'{"event_id": "a\x00b"}\x00', 400),
    "endless digits": (b'{"price_eth": ' + b"9" * 5000 + b"}", 400),
    "huge": (b"[" + b"0," * 600_000 + b"0]", 413),
    "lone surrogate": (b'{"sales": [{"event_id": "s", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "\\ud800",'
                       b' "price_eth": 1}]}', 400),  # valid JSON, but no text: it cannot be stored
    "lone surrogate as a key": (b'{"sales": [{"\\udfff": 1}]}', 400),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_hostile_webhook_bodies(client, name):
    body, status = BAD_BODIES[name]
    response = signed(client, body)
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"]


def test_hostile_values_inside_valid_sales_are_rejected_with_reasons(client):
    """Well-formed JSON with hostile values: each row is refused with its reason and kept, never a 500."""
    weird = [
        {"event_id": "x' OR 1=1 --", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1; DROP TABLE sales",
         "price_eth": 1},
        {"event_id": "a\u0000b", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1", "price_eth": 1},
        {"event_id": "nan", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1", "price_eth": "NaN"},
        {"event_id": "inf", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1", "price_eth": 1e308 * 10},
        {"event_id": "big", "timestamp": "99999-01-01T00:00:00Z", "punk_id": "1", "price_eth": 10 ** 30},
        {"event_id": "e" * 5000, "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1", "price_eth": 100},
        {"event_id": "ok-id", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "1", "price_eth": 100,
         "seller": "0x\u0000"},
        {"event_id": "nul-item", "timestamp": "2021-01-01T00:00:00Z", "punk_id": "78\u000004", "price_eth": 100},
        {"event_id": ["list"], "timestamp": {"a": 1}, "punk_id": None, "price_eth": True},
    ]
    response = signed(client, json.dumps({"sales": weird}).encode())
    assert response.status_code in (202, 409), response.text[:500]
    assert response.json()["accepted"] == 0 and response.json()["rejected"] == len(weird), response.json()


@pytest.mark.parametrize("name", ["deep array", "deep inside a sale", "not utf-8", "endless digits"])
def test_hostile_operator_bodies(client, operator, name):
    body, _ = BAD_BODIES[name]
    response = client.post("/v1/training-requests", content=body, headers=operator)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]


def test_an_operator_body_declared_as_html_is_a_415(client, operator):
    response = client.post("/v1/training-requests", content=b'{"reason": "drift"}',
                           headers={**operator, "Content-Type": "text/html"})
    assert response.status_code == 415 and "'text/html' is not JSON" in response.json()["error"], response.text


@pytest.mark.parametrize("reason, status", [(b'"a\\u0000b"', 422), (b'"\\ud800"', 400)])
def test_operator_reasons_that_no_column_can_store_are_refused(client, operator, reason, status):
    for path in ("/v1/training-requests", "/v1/models/rollback"):
        response = client.post(path, content=b'{"reason": ' + reason + b"}", headers=operator)
        assert response.status_code == status, (path, response.text[:300])
        assert response.json()["error"]
