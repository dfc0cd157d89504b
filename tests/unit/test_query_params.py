"""Query parameters are read in one place (api/deps.py query_value), which refuses one given twice;
a route refuses one it does not take, and takes what its handler declares (api/openapi.query_names)."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.requests import Request

from api.deps import Route, float_param, int_param, query_value, str_param, unknown_names, unknown_query
from api.openapi import query_names
from fairvalue.answers import parse_time, parse_window
from fairvalue.errors import BadInput

API = Path(__file__).resolve().parents[2] / "api"


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": []})


def test_a_parameter_given_once_or_not_at_all_is_read():
    assert query_value(request("ids=1,2&limit=3"), "ids") == "1,2"
    assert query_value(request("limit=3"), "ids") is None
    assert query_value(request("ids="), "ids") == ""
    assert int_param(request("limit=3"), "limit") == 3 and float_param(request("price=4.5"), "price") == 4.5


@pytest.mark.parametrize("read", [query_value, int_param, float_param, str_param])
def test_a_parameter_given_twice_is_refused_by_name(read):
    with pytest.raises(BadInput, match=r"^x is given twice; give it once$"):
        read(request("x=1&x=2"), "x")
    with pytest.raises(BadInput, match=r"^x is given 3 times; give it once$"):
        read(request("x=1&x=&x=2"), "x")  # an empty value is still one given


def test_a_hint_says_how_to_give_several_values():
    with pytest.raises(BadInput, match=r"give it once \(ids takes a comma-separated list\)"):
        query_value(request("ids=1&ids=2"), "ids", hint="ids takes a comma-separated list")


def test_no_handler_reads_the_query_string_but_through_query_value():
    """A handler that read request.query_params itself would keep the last of a repeated value again."""
    readers = [f"{path.name}:{n}" for path in sorted(API.glob("*.py")) if path.name != "deps.py"
               for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bquery_params\b", line)]
    assert readers == []


def test_a_parameter_the_route_does_not_take_is_refused_by_name_with_the_closest_one():
    takes = ("signal", "type", "trait", "min_deviation", "limit", "cursor")
    assert unknown_query(request("limit=5&cursor=x"), takes) is None
    assert unknown_query(request("limt=5"), takes) == (
        "unknown query parameter 'limt' (did you mean 'limit'?); it takes signal, type, trait, min_deviation, "
        "limit and cursor")
    assert unknown_query(request("threshhold=0.1&limit=5&zzz"), takes).startswith(
        "unknown query parameters 'threshhold', 'zzz'; it takes")
    assert unknown_query(request("x=1"), ()) == "unknown query parameter 'x'; it takes none"
    # a shared link's trackers pass; a parameter merely named like one does not
    assert unknown_query(request("utm_source=news&utm_campaign=dec&fbclid=Iw&gclid=x&limit=5"), takes) is None
    assert unknown_query(request("utm=1"), takes).startswith("unknown query parameter 'utm'")
    assert unknown_query(request("ids=1&ids=2"), ("ids",)) is None  # given twice is query_value's refusal
    named = unknown_query(request("&".join(f"p{i}=1" for i in range(8))), ("q",))
    assert "'p4'" in named and "'p5'" not in named and "and 3 more" in named


def test_a_body_key_is_named_the_same_way():
    assert unknown_names(["parms"], ("reason", "params"), "key", " in the body") == (
        "unknown key 'parms' (did you mean 'params'?) in the body; it takes reason and params")


def test_a_handler_takes_what_its_openapi_block_declares_and_a_prose_docstring_declares_nothing():
    from api import collections, pages

    assert query_names(collections.performance) == ("from", "to")
    assert query_names(pages.performance) == ("from", "to")  # a page declares its own the same way
    assert query_names(pages.home) == () and query_names(pages.queue) == ()


# A read through the api/deps.py helpers, called or passed on (pages._try(query_value, request, "price")).
READ = re.compile(r'\b(?:query_value|str_param|int_param|float_param)(?:\(|, )request, "(\w+)"')
WINDOW = {"from", "to"}  # what deps.window_params reads


def _routes():
    from starlette.routing import Route

    from api.app import app

    return [r for r in app.routes if isinstance(r, Route)]


def test_every_route_reads_exactly_the_query_parameters_it_declares():
    """A declared parameter no handler reads would be accepted and dropped without a word, the
    gap the check closes; one read but not declared would be refused whenever it is given."""
    for route in _routes():
        source = inspect.getsource(route.endpoint)
        reads = set(READ.findall(source)) | (WINDOW if "window_params(request)" in source else set())
        assert reads == set(query_names(route.endpoint)), route.path


def test_every_route_refuses_what_it_does_not_take():
    """Each route is a deps.Route, or a webhook that refuses it itself (after the signature, so the
    refusal is recorded with the others: tests/integration/test_query_refusals.py)."""
    from api import webhooks

    for route in _routes():
        assert isinstance(route, Route) or route.endpoint in (webhooks.receive_sales, webhooks.receive_listings), \
            route.path
    assert "unknown_query(request, query_names(" in inspect.getsource(webhooks._signed_call)


def test_a_number_too_long_is_out_of_range_and_a_date_past_the_years_says_which():
    """Twenty digits read "must be an integer", which they are; `to=9999-12-31` "must be an ISO date"."""
    for digits in ("99999999999999999999", "-2147483648", "2147483648", "1" * 400):
        with pytest.raises(BadInput, match=r"^top is out of range, got "):
            int_param(request(f"top={digits}"), "top")
    assert int_param(request("top=2147483647"), "top") == 2**31 - 1
    with pytest.raises(BadInput, match=r"^top must be an integer, got '1e3'$"):
        int_param(request("top=1e3"), "top")
    with pytest.raises(BadInput, match=r"^to must be between the years 1970 and 2200$"):
        parse_window(None, "9999-12-31")
    with pytest.raises(BadInput, match=r"^to must be an ISO date or date-time, got '2021-02-30'$"):  # no such day
        parse_window(None, "2021-02-30")
    assert parse_window(None, "2021-12-31") == (None, datetime(2022, 1, 1, tzinfo=UTC))
    # The last day of the range reads through its end; the day after it, and its other side, do not.
    assert parse_window(None, "2200-12-31")[1] == datetime(2201, 1, 1, tzinfo=UTC)
    for outside in ("2201-01-02", "2201-01-01", "2201-01-01T00:00:01Z", "1970-01-01T00:00:00+01:00", "1969-12-31"):
        with pytest.raises(BadInput, match=r"^to must be between the years 1970 and 2200$"):
            parse_window(None, outside)
    assert parse_time("1970-01-01", "from") == datetime(1970, 1, 1, tzinfo=UTC)
    assert int_param(request("top=000000000005"), "top") == 5  # leading zeros are no length


def test_a_window_is_parsed_and_checked_in_one_place_as_given():
    """`to=1969-12-31` was made `to=1970-01-01` (a bare date counts whole) before its years were
    checked, so a window before the epoch answered 200. Each bound is checked as given, and a
    window must end after the epoch, the earliest time a read takes."""
    from fairvalue.answers import EARLIEST_TIME, default_start

    with pytest.raises(BadInput, match=r"^to must be after 1970-01-01T00:00:00Z, the earliest time a read takes$"):
        parse_window(None, "1970-01-01T00:00:00Z")
    with pytest.raises(BadInput, match=r"^from must be between the years 1970 and 2200$"):
        parse_window("1969-12-31", "2021-01-01")
    with pytest.raises(BadInput, match=r"^to must be after from$"):
        parse_window("2021-01-02", "2021-01-01T12:00:00Z")
    day = datetime(2021, 1, 1, tzinfo=UTC)
    assert parse_window("2021-01-01", "2021-01-01") == (day, day + timedelta(days=1))  # one day, read whole
    assert parse_window(None, "1970-01-01")[1] == datetime(1970, 1, 2, tzinfo=UTC)  # the first day, read whole
    assert default_start(datetime(1970, 1, 2, tzinfo=UTC), timedelta(days=90)) == EARLIEST_TIME


def test_an_exponent_may_carry_its_sign():
    """`6.6e+16` is how Python and JavaScript write a large number (and the OpenAPI fuzzers send it):
    it was refused as "not a number" while `6.6e16` was taken."""
    assert float_param(request("price=6.6e%2B16"), "price") == 6.6e16
    assert float_param(request("price=1E%2B0"), "price") == float_param(request("price=1e-0"), "price") == 1.0
    with pytest.raises(BadInput, match=r"^price must be a number, got '1e 3'$"):  # a bare "+" is a space
        float_param(request("price=1e+3"), "price")
    with pytest.raises(BadInput, match=r"must be a number"):
        float_param(request("price=1e%2B%2B3"), "price")


def test_every_form_of_a_bare_date_counts_its_whole_day():
    """`to=20211231` (a basic ISO date, which the reads take) ended at the 31st's midnight, a day
    short of `to=2021-12-31`: only the extended form was told to be a date."""
    end = datetime(2022, 1, 1, tzinfo=UTC)
    for day in ("2021-12-31", "20211231", "2021-W52-5"):
        assert parse_window(None, day) == (None, end), day
    for moment in ("2021-12-31T00:00:00Z", "2021-12-31T00", "20211231T000000"):
        assert parse_window(None, moment) == (None, end - timedelta(days=1)), moment


def test_a_bound_in_the_year_2201_is_refused_as_given():
    """`from=2201-01-01` was taken (the year check read up to LATEST_TIME's year, 2201), while the
    README and the OpenAPI document say the years 1970 to 2200. The end of 2200 is still a `to`."""
    for bound in ("2201-01-01", "2201-01-01T00:00:00Z"):
        with pytest.raises(BadInput, match=r"^from must be between the years 1970 and 2200$"):
            parse_window(bound, None)
    assert parse_window(None, "2200-12-31T19:00:00-05:00")[1] == datetime(2201, 1, 1, tzinfo=UTC)


def test_an_answer_built_whole_is_made_ready_for_json_in_one_place():
    """answers.rounded_all serves the explanation and the track record alike (the track record had
    its own copy): floats rounded, infinities and NaN None, numpy integers plain, keys text, and
    a boolean left a boolean (it is an int to Python)."""
    import numpy as np

    from fairvalue.answers import rounded_all

    built = {1: np.int64(3), "x": [np.float32(0.1234567891), float("inf"), -np.inf, float("nan"), True, "s"],
             "y": (np.float64(2.0000004),)}
    assert rounded_all(built) == {"1": 3, "x": [0.123457, None, None, None, True, "s"], "y": [2.0]}
    assert type(rounded_all(np.int64(3))) is int and rounded_all(True) is True


def test_a_choice_is_read_in_any_case_and_the_document_names_the_choices_as_the_reads_spell_them():
    """?signal= took any case while ?decision= and ?state= took only theirs, and the document listed
    BUY and buy but not Buy: one rule (fairvalue.answers.check_choice), one list per parameter."""
    from api.app import app
    from api.openapi import document
    from fairvalue.answers import check_choice
    from models import gates
    from models.signals import SIGNALS
    from storage import requests

    spelled = [check_choice("signal", s, SIGNALS) for s in ("buy", "Buy", "SELL", "hOLD")]
    assert spelled == ["BUY", "BUY", "SELL", "HOLD"]
    assert check_choice("decision", "PROMOTE", gates.RECORDED) == "promote"
    for wrong in ("ſell", "BUY ", "", "MAYBE"):
        with pytest.raises(BadInput, match=r"^signal must be one of BUY, SELL, HOLD \(in any case\), got "):
            check_choice("signal", wrong, SIGNALS)
    paths = document(app)["paths"]
    for path, name, choices in (("/v1/collections/{slug}/signals", "signal", SIGNALS),
                                ("/v1/collections/{slug}/decisions", "decision", gates.RECORDED),
                                ("/v1/collections/{slug}/training-requests", "state", requests.STATES)):
        param = next(p for p in paths[path]["get"]["parameters"] if p["name"] == name)
        assert param["schema"]["enum"] == list(choices) and "any case" in param["description"], name
