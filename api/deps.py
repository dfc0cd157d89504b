"""What handlers share: the collection a route is about, and query-parameter parsing."""

from __future__ import annotations

from starlette.requests import Request

from fairvalue.errors import BadInput
from fairvalue.reads import iso, rounded  # noqa: F401  (kept importable from here)
from fairvalue.settings import get_settings


def slug_of(request: Request) -> str:
    """`/v1/collections/{slug}/...`, or the default collection on the unprefixed aliases."""
    return request.path_params.get("slug") or get_settings().collection


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadInput(f"{name} must be an integer, got {raw[:40]!r}") from None


def float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name} must be a number, got {raw[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadInput(f"{name} must be a finite number")
    return value


def str_param(request: Request, name: str, max_length: int = 100) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise BadInput(f"{name} is longer than {max_length} characters")
    return raw
