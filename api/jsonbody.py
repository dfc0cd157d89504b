"""Parsing request bodies as JSON, refusing what would hurt: bytes that are not UTF-8, nesting
deeper than any real payload (deep nesting exhausts the stack later, in code far from here),
integers too long to convert, and text escapes of lone UTF-16 surrogates (`"\\ud800"`: valid JSON,
but no text a database can store). Every refusal says why, as a 400."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32  # a sale is 2 levels deep inside {"sales": [...]}; nothing we accept needs more
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape; paired ones are fine


class BadJson(ValueError):
    pass


# What clients send when nobody chose a type: curl -d and urllib say a form, some tools plain text.
# Such a body is read as JSON, as one without the header is; a type that names another format is not.
UNCHOSEN_MEDIA_TYPES = {"application/x-www-form-urlencoded", "text/plain"}


def media_type_refusal(content_type: str | None) -> str | None:
    """Why a body declared with this Content-Type is not read as JSON, or None when it is: any
    JSON type (application/json, application/*+json), no header, or a tool's default
    (UNCHOSEN_MEDIA_TYPES), in UTF-8. A body declared as another format (multipart, XML, HTML)
    is refused with a 415 that says so, rather than a parse error about its first byte."""
    if not content_type:
        return None
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    kind, _, subtype = media_type.partition("/")
    is_json = kind == "application" and (subtype == "json" or subtype.endswith("+json"))
    if not is_json and media_type not in UNCHOSEN_MEDIA_TYPES:
        return f"Content-Type {media_type or '(empty)'!r} is not JSON; send application/json"
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", parameters, re.IGNORECASE)
    if charset and charset.group(1).lower().replace("-", "") != "utf8":
        return f"charset {charset.group(1)!r} is not UTF-8; send the body as UTF-8"
    return None


def strings(value: Any):
    """Every string in a parsed value, keys included, without recursion."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def depth(value: Any) -> int:
    """Nesting depth of lists and objects, without recursion (so any depth is measured safely)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node if isinstance(child, dict | list))
    return deepest


def parse(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadJson(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadJson(f"body is nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise BadJson(f"body holds a value that cannot be read: {exc}") from None
    if depth(value) > max_depth:
        raise BadJson(f"body is nested deeper than {max_depth} levels")
    # Only a body that spells such an escape can hold one; the walk is skipped for the rest.
    if SURROGATE_ESCAPE.search(text) and any(_has_lone_surrogate(s) for s in strings(value)):
        raise BadJson("body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    return value
