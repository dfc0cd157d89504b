"""/readyz: 503 only without the database or a published snapshot, which reads need. A broker
outage leaves reads and webhooks working, so it answers 200 "degraded": a Redis outage must not
take every API replica out of the balancer."""

from __future__ import annotations

import json

import pytest

import api.ops as ops


@pytest.fixture
def probes(monkeypatch):
    state = {"database": "ok", "broker": None, "snapshot": "ok: 7 as of 2021-12-31T00:00:00Z"}
    monkeypatch.setattr(ops, "_database_check", lambda: state["database"])
    monkeypatch.setattr(ops, "_broker_check", lambda: state["broker"])
    monkeypatch.setattr(ops, "_snapshot_check", lambda: state["snapshot"])
    return state


def answer(probes) -> tuple[int, dict]:
    response = ops.readyz(None)
    return response.status_code, json.loads(response.body)


def test_all_up_is_ready(probes):
    status, body = answer(probes)
    assert status == 200 and body["ready"] is True and body["status"] == "ok"


def test_broker_down_is_ready_but_degraded(probes):
    probes["broker"] = "OperationalError: Error 111 connecting to 127.0.0.1:6379. Connection refused."
    status, body = answer(probes)
    assert status == 200, body
    assert body["ready"] is True and body["status"] == "degraded"
    assert body["checks"]["broker"].startswith("down: OperationalError")
    assert body["checks"]["database"] == "ok" and body["checks"]["snapshot"].startswith("ok")


@pytest.mark.parametrize("down", ["database", "snapshot"])
def test_database_or_snapshot_missing_is_not_ready(probes, down):
    probes[down] = "down: OperationalError" if down == "database" else "none published"
    status, body = answer(probes)
    assert status == 503 and body["ready"] is False and down in body["error"]
    assert "snapshot" not in body["checks"] or down == "snapshot"  # no snapshot read without a database
