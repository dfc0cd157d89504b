import pytest

from api import jsonbody
from api.jsonbody import BadJson, depth, parse


def test_depth_is_measured_without_recursion():
    assert depth(1) == 0
    assert depth({"sales": [{"a": 1}]}) == 3
    deep = []
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert depth(deep) == 100_001


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": "caf\xe9"}', "not UTF-8"),
        (b"{nope", "not valid JSON"),
        (b"[" * 50 + b"]" * 50, "deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 32"),
        (b'{"n": ' + b"1" * 5000 + b"}", "cannot be read"),
        # Which price did the sender mean? Python's json keeps the last one silently.
        (b'{"sales": [{"price": 1, "price": 1000}]}', "names the key 'price' twice"),
    ],
)
def test_refusals_say_why(body, reason):
    with pytest.raises(BadJson, match=reason):
        parse(body)


def test_ordinary_bodies_parse():
    assert parse(b'{"sales": [{"event_id": "x", "price": 1.5}]}') == {"sales": [{"event_id": "x", "price": 1.5}]}


@pytest.mark.parametrize("content_type", [None, "", "application/json", "Application/JSON; charset=UTF-8",
                                          "application/json;charset=utf8", "application/vnd.sales+json",
                                          # what curl -d and urllib send unasked, and some tools' default
                                          "application/x-www-form-urlencoded", "text/plain; charset=utf-8"])
def test_json_media_types_no_header_and_tool_defaults_are_read(content_type):
    assert jsonbody.media_type_refusal(content_type) is None


@pytest.mark.parametrize("content_type, says", [
    ("multipart/form-data; boundary=x", "'multipart/form-data' is not JSON"),
    ("application/xml", "'application/xml' is not JSON"),
    ("text/html", "'text/html' is not JSON"),
    ("application/jsonp", "'application/jsonp' is not JSON"),
    ("application/json; charset=latin-1", "charset 'latin-1' is not UTF-8"),
    ("text/plain; charset=utf-16", "charset 'utf-16' is not UTF-8"),
])
def test_other_media_types_are_refused_with_why(content_type, says):
    assert says in jsonbody.media_type_refusal(content_type)
