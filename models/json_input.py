"""Reading JSON text that comes from outside (a webhook body, a line of a backfill file), refusing
what would hurt later: nesting deeper than any real payload (deep nesting exhausts the stack in
code far from here), integers too long to convert, text escapes of lone UTF-16 surrogates
(`"\\ud800"`: valid JSON, but no text a database can store), and an object that names one key twice
(`{"price": 1, "price": 1000}`: which did the sender mean?). Every refusal says why; a key no
reader takes is named by unknown_names, the same words for a webhook's row and a file's."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

MAX_DEPTH = 32  # a sale is 2 levels deep inside {"sales": [...]}; nothing we accept needs more
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape; paired ones are fine


class BadJson(ValueError):
    pass


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


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _DuplicateKey(ValueError):
    pass


def _object_of_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _DuplicateKey(twice)
    return found


def loads(text: str, what: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """`text` parsed as JSON, or BadJson saying why `what` (a body, a line) is refused."""
    try:
        value = json.loads(text, object_pairs_hook=_object_of_unique_keys)
    except _DuplicateKey as exc:
        raise BadJson(f"{what} names the key {str(exc)[:100]!r} twice in one object") from None
    except json.JSONDecodeError as exc:
        raise BadJson(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadJson(f"{what} is nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise BadJson(f"{what} holds a value that cannot be read: {exc}") from None
    if depth(value) > max_depth:
        raise BadJson(f"{what} is nested deeper than {max_depth} levels")
    # Only a text that spells such an escape can hold one; the walk is skipped for the rest.
    if SURROGATE_ESCAPE.search(text) and any(_has_lone_surrogate(s) for s in strings(value)):
        raise BadJson(f"{what} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    return value


def unknown_names(unknown: Sequence[str], takes: Sequence[str], what: str, where: str = "") -> str:
    """The refusal of names a caller gave that are not taken (a body's keys, a file's JSON row's,
    a query's parameters): each one named, with the closest taken name when there is one
    (difflib), then what is taken. "unknown key 'parms' (did you mean 'params'?) in the body; it takes reason and
    params"."""
    named = []
    for name in unknown[:5]:
        close = difflib.get_close_matches(name, takes, n=1)
        named.append(f"{name[:40]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    listed = (", ".join(takes[:-1]) + " and " + takes[-1]) if len(takes) > 1 else (takes[0] if takes else "none")
    return f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(named)}{more}{where}; it takes {listed}"
