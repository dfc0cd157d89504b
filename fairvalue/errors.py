"""What the read functions raise; the HTTP layer maps each to one status code."""

from __future__ import annotations


class NotFound(LookupError):
    """404: no such collection, item or version."""


class BadInput(ValueError):
    """400: a parameter is malformed or out of range."""


class NotReady(RuntimeError):
    """503: the data the answer needs does not exist yet (no snapshot, no champion)."""


class Lost(RuntimeError):
    """500: stored data the answer needs is gone or corrupt (an artifact deleted from the store, or
    not the bytes registered). Unlike NotReady, no retry brings it back: an operator must restore it."""
