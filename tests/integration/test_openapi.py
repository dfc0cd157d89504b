"""/openapi.json is a valid OpenAPI 3 document that lists exactly the app's routes and methods,
and a bounded property-based run (schemathesis) over it against the seeded app finds no 5xx."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from openapi_spec_validator import validate
from starlette.routing import Route

from api.app import app

pytestmark = pytest.mark.integration
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


@schema.parametrize()
@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, seeded):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}"
    if response.status_code >= 400:
        assert response.json()["status"] == response.status_code  # every error is the JSON shape
