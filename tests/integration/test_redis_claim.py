"""A test session's claim of a Redis database empties it (tests/conftest.py): what an earlier
session left there, one that never asked for the broker fixture (whose flush was the only one) or
was killed, was the next claimer's to consume."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from tests import conftest
from tests.realparts import ROOT

pytestmark = pytest.mark.integration
STRAY = "fairvalue:test:stray-from-an-earlier-session"
# The stray key, left only in a database no session holds (in one step: a live session's broker
# is not to be touched); it goes by itself within five minutes should no claim come.
LEAVE_IF_UNCLAIMED = ("if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
                      "redis.call('SET', KEYS[2], 'a message nobody took', 'EX', 300) return 1")


def _claimed_by_a_new_session(url: str) -> subprocess.CompletedProcess:
    """A session started as pytest starts one (importing tests/conftest.py), told to take `url`;
    it prints its session id and ends, its claim left for the caller to give back."""
    return subprocess.run(
        [sys.executable, "-c", "from tests import conftest; print(conftest.SESSION_ID)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FAIRVALUE_TEST_REDIS_URL": url, "PYTEST_XDIST_WORKER": ""},
    )


def test_claiming_a_database_empties_what_an_earlier_session_left_but_the_claim():
    # From the lowest: sessions take 15 first and count down, so one starting meanwhile is least
    # likely to take the database between the stray key and the claim (it would skip to the next).
    for db in sorted(conftest.REDIS_TEST_DBS):
        url = f"redis://127.0.0.1:6379/{db}"
        left = redis.Redis.from_url(url)
        if not left.eval(LEAVE_IF_UNCLAIMED, 2, conftest.REDIS_CLAIM_KEY, STRAY):
            continue  # another live session's
        new_session = _claimed_by_a_new_session(url)
        if "held by another test session" in new_session.stderr:
            continue
        assert new_session.returncode == 0, new_session.stderr
        try:
            assert not left.exists(STRAY), f"the claim of {url} left an earlier session's key in it"
            assert left.get(conftest.REDIS_CLAIM_KEY) == new_session.stdout.strip().encode()
            assert 0 < left.ttl(conftest.REDIS_CLAIM_KEY) <= conftest.REDIS_CLAIM_SECONDS  # a killed session lets go
        finally:
            # Its claim outlives it by a lease; let it go so later runs keep their database.
            left.delete(STRAY, conftest.REDIS_CLAIM_KEY)
        return
    pytest.fail("every test Redis database is held by another test session")
