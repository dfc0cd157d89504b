"""/openapi.json is a valid OpenAPI 3 document that lists exactly the app's routes and methods,
and a bounded property-based run (schemathesis) over it against the seeded app finds no 5xx."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from jsonschema import Draft4Validator, FormatChecker
from openapi_spec_validator import validate
from starlette.routing import Route

from api.app import app

pytestmark = pytest.mark.integration
C = "/v1/collections/cryptopunks"
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


def test_document_validates_and_matches_the_routes():
    from starlette.testclient import TestClient

    doc = TestClient(app).get("/openapi.json").json()
    validate(doc)
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = {(re.sub(r"{(\w+)(:\w+)?}", r"{\1}", r.path), m) for r in app.routes
              if isinstance(r, Route) and r.include_in_schema for m in r.methods if m != "HEAD"}
    assert documented == routed
    assert ("/v1/collections/{slug}/signals", "GET") in documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op.get("summary"), path
            assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == re.findall(r"{(\w+)}", path)
            assert "400" in op["responses"], path  # any route refuses a query parameter it does not take
        for method, op in ops.items():  # only reads are rate limited (api.limits): a POST never gets a 429
            assert ("429" in op["responses"]) == (path.startswith("/v1/") and method == "get"), (method, path)
    # The query parameters each route takes (and refuses any other) are those the document lists.
    for r in app.routes:
        if isinstance(r, Route) and r.include_in_schema:
            for m in r.methods - {"HEAD"}:
                listed = [p["name"] for p in doc["paths"][re.sub(r"{(\w+)(:\w+)?}", r"{\1}", r.path)][m.lower()]
                          .get("parameters", []) if p["in"] == "query"]
                assert list(getattr(r, "query_names", ())) == listed, (m, r.path)
    page = TestClient(app).get("/docs")
    assert page.status_code == 200 and "/v1/collections/{slug}/performance" in page.text


def test_a_405_allows_every_method_of_its_path():
    """GET and POST of /training-requests are two routes, and Starlette's 405 named the first's alone."""
    from starlette.testclient import TestClient

    client = TestClient(app)
    for path in ("/v1/training-requests", "/v1/collections/cryptopunks/training-requests"):
        answer = client.delete(path)
        assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD, POST", (path, answer.headers)
    assert client.put("/v1/items/1").headers["allow"] == "GET, HEAD"


# (path, documented path, parameter, value, whether the read takes it): each on both sides of a bound.
BOUNDS = [
    *[(f"/v1/collections/{v}", "/v1/collections/{slug}", "slug", v, taken)
      for v, taken in [("cryptopunks", True), ("no-such.collection_1", True), ("é", False), ("a+b", False),
                       ("a" * 65, False)]],
    *[(f"{C}/snapshots/{v}", "/v1/collections/{slug}/snapshots/{snapshot}", "snapshot", v, taken)
      for v, taken in [("published", True), ("1", True), ("2147483647", True), ("0", False), ("2147483648", False)]],
    *[(f"{C}/snapshots?offset={v}", "/v1/collections/{slug}/snapshots", "offset", v, taken)
      for v, taken in [("1000000000", True), ("1000000001", False), ("", True)]],
    *[(f"{C}/signals?min_deviation={quote(v)}", "/v1/collections/{slug}/signals", "min_deviation", v, taken)
      for v, taken in [("999999", True), ("1e+3", True), ("1000000", False)]],
    *[(f"{C}/items/7804/quote?price={quote(v)}", "/v1/collections/{slug}/items/{item_id}/quote", "price", v, taken)
      for v, taken in [("1000000000000", True), ("6.5e+1", True), ("1000000000001", False)]],
    *[(f"{C}/valuations?ids={quote(v)}", "/v1/collections/{slug}/valuations", "ids", v, taken)
      for v, taken in [("1, 2,,3", True), (",,,", False), ("", False)]],
    *[(f"{C}/items/7804/history?{name}={quote(v)}", "/v1/collections/{slug}/items/{item_id}/history", name, v, taken)
      for name in ("from", "to")
      for v, taken in [("2021-12-31", True), ("1970-01-01T00:00:01Z", True), ("2200-12-31", True),
                       ("1969-12-31", False), ("2201-01-01", False), ("2201-01-01T00:00:00Z", False), ("", True)]],
]


def test_the_document_takes_what_the_reads_take(client):
    """A value the document allows is taken and one it refuses is a 400, on each side of every bound:
    the document said a slug was any text of 64, a snapshot id any ten digits, an offset, a
    min_deviation or a price any number past what the reads take, a window's bound a date-time of
    any year (and not a bare date, which the reads take), and `1e+3` was refused as no number."""
    doc = client.get("/openapi.json").json()
    for url, path, name, value, taken in BOUNDS:
        param = next(p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == name)
        wire = int(value) if value.isdigit() and "integer" in str(param["schema"]) else value
        documented = (value == "" and param.get("allowEmptyValue", False)) or Draft4Validator(
            param["schema"], format_checker=FormatChecker()).is_valid(
            float(wire) if param["schema"].get("type") == "number" else wire)
        answer = client.get(url)
        assert (documented, answer.status_code != 400) == (taken, taken), (url, answer.status_code, answer.text[:200])


@schema.parametrize()
@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, seeded):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}"
    if response.status_code >= 400:
        assert response.json()["status"] == response.status_code  # every error is the JSON shape
