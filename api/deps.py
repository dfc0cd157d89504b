"""What handlers share: the collection a route is about, query-parameter parsing (the only
place that reads the query string: see query_value), and the route that refuses a query
parameter its handler does not take (Route)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette import routing
from starlette.exceptions import HTTPException
from starlette.requests import Request

from api.openapi import query_names
from fairvalue.answers import SLUG_PATTERN
from fairvalue.errors import BadInput
from fairvalue.settings import get_settings
from models.json_input import unknown_names  # the refusal's words, as a webhook's rows and a file's get them

SLUG = re.compile(SLUG_PATTERN)
INTEGER = re.compile(r"-?[0-9]+")  # ASCII only: re's [0-9] is not \d
# An exponent may carry its sign either way: "6.6e+16" is how Python, JavaScript and the OpenAPI
# fuzzers write a large number, and was refused as "not a number" (a literal "+" in a query string
# is a space: a client sends it as %2B).
DECIMAL = re.compile(r"-?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][-+]?[0-9]{1,3})?")


def slug_of(request: Request) -> str:
    """`/v1/collections/{slug}/...`, or the default collection on the unprefixed aliases."""
    slug = request.path_params.get("slug") or get_settings().collection
    if not SLUG.fullmatch(slug):
        raise BadInput(f"malformed collection slug {slug[:40]!r}: letters, digits, _ . - (max 64)")
    return slug


# What a link's tracker appends (a newsletter's utm_source, an ad's click id): never ours to
# read, and a shared page link carrying one must open, not answer 400.
TRACKING = re.compile(r"utm_[a-z_]{1,30}|fbclid|gclid|msclkid")


def unknown_query(request: Request, takes: Sequence[str]) -> str | None:
    """The refusal of the query parameters outside `takes`, or None: a misspelled one (?limt=5)
    would otherwise be ignored and the answer given as if it were absent. Trackers' parameters
    (TRACKING) pass."""
    unknown = [name for name in request.query_params.keys() if name not in takes and not TRACKING.fullmatch(name)]
    return unknown_names(unknown, takes, "query parameter") if unknown else None


class Route(routing.Route):
    """A route that answers 400, naming it, to a query parameter its handler does not take. What
    the handler takes is what its docstring's OpenAPI block declares `in: query`
    (api.openapi.query_names): for an API handler the list /openapi.json publishes, so the document,
    the check and the reads (query_value below) name the same parameters."""

    def __init__(self, path: str, endpoint, **kwargs) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.query_names = query_names(endpoint)
        self.path_methods: set[str] = set(self.methods or ())  # share_allowed_methods widens it

    async def handle(self, scope, receive, send) -> None:
        if self.methods and scope["method"] not in self.methods:
            # Starlette answers a 405 from the first route of the path, naming its methods alone:
            # GET /training-requests's said "GET, HEAD" to a client that may also POST there.
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(self.path_methods))})
        # A 405 comes first (super); most requests carry no query string, and pay nothing.
        if scope.get("query_string") and scope["method"] in (self.methods or ()):
            refusal = unknown_query(Request(scope), self.query_names)
            if refusal:
                # HTTPException, not BadInput: its handler answers a browser on a page with the HTML error page.
                raise HTTPException(400, refusal)
        await super().handle(scope, receive, send)


def share_allowed_methods(routes: list) -> list:
    """Give each Route the methods of every Route of its path, for its 405's Allow header."""
    by_path: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Route):
            by_path.setdefault(route.path, set()).update(route.methods or ())
    for route in routes:
        if isinstance(route, Route):
            route.path_methods = by_path[route.path]
    return routes


def query_value(request: Request, name: str, hint: str = "") -> str | None:
    """The value of query parameter `name`, or None when it is not given. Every query parameter of
    the API and the pages is read here. One given twice (?ids=1&ids=2) is a 400 naming it:
    Starlette keeps the last value, so the first was dropped without a word. `hint` says how to
    give several values, for a parameter that takes them."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        times = "twice" if len(values) == 2 else f"{len(values)} times"
        raise BadInput(f"{name} is given {times}; give it once" + (f" ({hint})" if hint else ""))
    return values[0] if values else None


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = query_value(request, name)
    if raw is None or raw == "":
        return default
    # Plain ASCII digits with an optional minus, as a price is read: int() would also take
    # "3_0", "+3" and full-width digits.
    if not INTEGER.fullmatch(raw):
        raise BadInput(f"{name} must be an integer, got {raw[:40]!r}")
    # Past what a database integer holds: a 400 here, not a 500 there (the length first: int() of a
    # query string's thousands of digits is work for nothing).
    if len(raw.lstrip("-").lstrip("0")) > 10 or not -(2**31) < (value := int(raw)) < 2**31:
        raise BadInput(f"{name} is out of range, got {raw[:40]!r}")
    return value


def float_param(request: Request, name: str) -> float | None:
    raw = query_value(request, name)
    if raw is None or raw == "":
        return None
    if not DECIMAL.fullmatch(raw):  # float() would also take "1_0", "+1", "inf" and full-width digits
        raise BadInput(f"{name} must be a number, got {raw[:40]!r}")
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise BadInput(f"{name} must be a finite number")
    return value


def str_param(request: Request, name: str, max_length: int = 100) -> str | None:
    raw = query_value(request, name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise BadInput(f"{name} is longer than {max_length} characters")
    if "\x00" in raw:  # no database takes NUL in text: refuse it here, not as a 500 there
        raise BadInput(f"{name} contains a NUL character")
    return raw


def window_params(request: Request) -> tuple[str | None, str | None]:
    """?from=&to= of a windowed read, as given: fairvalue.answers.parse_window parses and checks
    both (a bare date `to` counts that whole day)."""
    return str_param(request, "from"), str_param(request, "to")


def etag_matches(request: Request, digest: str) -> bool:
    """An If-None-Match naming the content-addressed `digest` (among others) or `*`: answer 304."""
    asked = request.headers.get("if-none-match", "")
    return f'"{digest}"' in asked or asked.strip() == "*"
