"""Parsing request bodies as JSON: bytes that are not UTF-8 are refused here, and the text as
models.json_input refuses it (nesting, long integers, lone surrogates, a key named twice).
Every refusal says why, as a 400; a body declared as another format, as a 415."""

from __future__ import annotations

import re
from typing import Any

from models.json_input import MAX_DEPTH, BadJson, depth, loads

__all__ = ["BadJson", "depth", "media_type_refusal", "parse"]

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


def parse(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return loads(text, "body", max_depth)
