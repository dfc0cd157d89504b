"""The 401s of the operator endpoints say why: no token presented, an invalid one, a revoked one,
and no active token at all (none created, or every one revoked), which is not "disabled"."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel
from starlette.exceptions import HTTPException

import storage.tables  # noqa: F401  (registers the tables)
from api.auth import operator_name
from storage import tokens


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        yield session


def refusal(session: Session, authorization: str, bootstrap: str = "") -> str:
    with pytest.raises(HTTPException) as refused:
        operator_name(session, authorization, bootstrap)
    assert refused.value.status_code == 401 and refused.value.headers == {"WWW-Authenticate": "Bearer"}
    return refused.value.detail


def test_before_any_token_was_created_the_refusal_says_so(session):
    assert refusal(session, "Bearer fv_x") == (
        "no active operator token: none was created yet; create one with `fairvalue tokens create --name NAME` "
        "(or set FAIRVALUE_OPERATOR_TOKEN)")


def test_a_revoked_token_is_refused_as_revoked(session):
    alice, bob = tokens.create(session, "alice"), tokens.create(session, "bob")
    assert operator_name(session, f"Bearer {alice}", "") == "alice"
    tokens.revoke(session, "alice")
    assert refusal(session, f"Bearer {alice}").startswith("operator token 'alice' was revoked at 20")
    assert refusal(session, f"Bearer {alice}").endswith("Z")
    assert refusal(session, "Bearer fv_never_made") == "invalid operator token"
    assert refusal(session, "") == "operator endpoints need Authorization: Bearer <token>"
    assert operator_name(session, f"bearer {bob}", "") == "bob"


def test_after_the_last_token_is_revoked_the_refusal_is_not_disabled_but_why(session):
    alice = tokens.create(session, "alice")
    tokens.revoke(session, "alice")
    revoked = refusal(session, f"Bearer {alice}")
    assert revoked.startswith("operator token 'alice' was revoked at ")
    assert revoked.endswith(", and no operator token is active: create one with `fairvalue tokens create "
                            "--name NAME` (or set FAIRVALUE_OPERATOR_TOKEN)")
    for other in ("Bearer fv_never_made", ""):
        assert refusal(session, other) == ("no active operator token: every token was revoked; create one with "
                                           "`fairvalue tokens create --name NAME` (or set FAIRVALUE_OPERATOR_TOKEN)")
    assert "disabled" not in revoked
    # The bootstrap token still works then, and a revoked token beside it is still named revoked.
    assert operator_name(session, "Bearer boot", "boot") == "bootstrap"
    assert refusal(session, f"Bearer {alice}", "boot").startswith("operator token 'alice' was revoked at ")


def test_a_token_name_ending_in_a_newline_is_refused(session):
    """`$` matched before a final newline: "bob\\n" was a name of its own, listed as a second "bob"."""
    with pytest.raises(ValueError, match="a token name is 1-100 letters"):
        tokens.create(session, "bob\n")
    assert tokens.create(session, "bob").startswith(tokens.PREFIX)
