import pytest

from api.signing import SignatureError, sign, verify

SECRET = "s3cret"
BODY = b'{"event_id": "x"}'


def test_a_signed_body_verifies():
    header = sign(SECRET, BODY, timestamp=1_000_000)
    assert verify(header, BODY, SECRET, 300, now=1_000_100) == 1_000_000


@pytest.mark.parametrize(
    "header, body, now, message",
    [
        (None, BODY, 1_000_000, "missing"),
        ("v1=abc", BODY, 1_000_000, "t="),
        ("t=1000000", BODY, 1_000_000, "v1="),
        (sign(SECRET, BODY, 1_000_000), BODY + b" ", 1_000_000, "does not match"),
        (sign("other", BODY, 1_000_000), BODY, 1_000_000, "does not match"),
        (sign(SECRET, BODY, 1_000_000), BODY, 1_000_301, "tolerance"),
        (sign(SECRET, BODY, 1_000_000), BODY, 999_600, "tolerance"),
        ("t=1000000,v1=\xe9", BODY, 1_000_000, "does not match"),  # non-ASCII: refused, not a crash
    ],
)
def test_bad_signatures_are_refused_with_reason(header, body, now, message):
    with pytest.raises(SignatureError, match=message):
        verify(header, body, SECRET, 300, now=now)


def test_any_matching_v1_is_accepted_during_secret_rotation():
    good = sign(SECRET, BODY, 5).split("v1=")[1]
    assert verify(f"t=5,v1=deadbeef,v1={good}", BODY, SECRET, 300, now=5) == 5


@pytest.mark.parametrize(
    "header, body, now, kind",
    [
        (None, BODY, 1_000_000, "unsigned"),
        ("v1=abc", BODY, 1_000_000, "malformed"),
        (sign("other", BODY, 1_000_000), BODY, 1_000_000, "bad_signature"),
        (sign(SECRET, BODY, 1_000_000), BODY, 1_000_301, "stale"),
        # A forged signature outside the tolerance is a bad signature, not a stale one: only an
        # authentic delivery can be a replay.
        (sign("other", BODY, 1_000_000), BODY, 1_000_301, "bad_signature"),
    ],
)
def test_refusals_carry_their_kind(header, body, now, kind):
    with pytest.raises(SignatureError) as refused:
        verify(header, body, SECRET, 300, now=now)
    assert refused.value.kind == kind


def test_a_delivery_is_its_timestamp_and_body():
    from api.signing import delivery_digest

    assert delivery_digest(5, BODY) == delivery_digest(5, BODY)
    assert delivery_digest(5, BODY) != delivery_digest(6, BODY) != delivery_digest(5, BODY + b" ")
