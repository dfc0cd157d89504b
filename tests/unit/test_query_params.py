"""Query parameters are read in one place (api/deps.py query_value), which refuses one given twice."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.requests import Request

from api.deps import float_param, int_param, query_value, str_param
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
