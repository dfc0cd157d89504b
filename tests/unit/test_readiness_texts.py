"""/readyz is public: a broker that is down was answered with its error whole, which names the
broker's host and port; the database's answers its type alone (tests/unit/test_readiness.py)."""

from __future__ import annotations

import json

import api.ops as ops


def test_a_broker_that_is_down_is_answered_by_its_error_s_type_alone(monkeypatch):
    monkeypatch.setattr(ops, "_database_check", lambda: "ok")
    monkeypatch.setattr(ops, "_snapshot_check", lambda: "ok: 7 as of 2021-12-31T00:00:00Z")
    monkeypatch.setattr(ops, "_broker_check",
                        lambda: "OperationalError: Error 111 connecting to redis.internal:6379. Connection refused.")
    response = ops.readyz(None)
    body = json.loads(response.body)
    assert response.status_code == 200 and body["status"] == "degraded"
    assert body["checks"]["broker"] == "down: OperationalError"
    assert "redis.internal" not in response.body.decode() and "6379" not in response.body.decode()
