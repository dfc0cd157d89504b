"""Webhook signatures, Stripe-style: header `t=<unix seconds>,v1=<hex hmac>` where the HMAC
is SHA-256 over `<t>.<raw body>` with the shared secret. The timestamp bounds replays in time;
within the tolerance, api/webhooks.py refuses a delivery whose (t, body) was already accepted."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Fairvalue-Signature"


class SignatureError(ValueError):
    """Why a signature was refused; `kind` is recorded: unsigned, malformed, bad_signature or
    stale (an authentic signature outside the tolerance)."""

    def __init__(self, message: str, kind: str = "bad_signature", timestamp: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.timestamp = timestamp


def delivery_digest(timestamp: int, body: bytes) -> str:
    """What a signature covers, as one digest: the same (t, body) is the same delivery, however
    the header around it is spelt."""
    return hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()


def compute(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value a sender puts on `body`."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute(secret, t, body)}"


def verify(header: str | None, body: bytes, secret: str, tolerance_seconds: int, now: float | None = None) -> int:
    """Check the header; return its timestamp or raise SignatureError with the reason."""
    if not header:
        raise SignatureError(f"missing {HEADER} header", "unsigned")
    parts: dict[str, list[str]] = {}
    for piece in header.split(","):
        key, sep, value = piece.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("signature header has no valid t=<unix seconds>", "malformed") from None
    signatures = parts.get("v1")
    if not signatures:
        raise SignatureError("signature header has no v1=<hmac>", "malformed")
    # The HMAC first: a stale error then means an authentic but old delivery (a replay candidate).
    expected = compute(secret, timestamp, body)
    # As bytes: compare_digest refuses str with non-ASCII characters, which anyone can send.
    if not any(hmac.compare_digest(expected.encode(), s.encode("utf-8", "replace")) for s in signatures):
        raise SignatureError("signature does not match the body", "bad_signature")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureError(f"signature timestamp is outside the {tolerance_seconds}s tolerance", "stale", timestamp)
    return timestamp
