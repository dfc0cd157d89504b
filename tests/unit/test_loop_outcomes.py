"""The readable lines of what the policy and the monitor did (fairvalue/outcomes.py), and task
run details kept JSON-safe (storage/runs.py)."""

from __future__ import annotations

import json

import numpy as np

from fairvalue.outcomes import monitor_line, paused_line, policy_line
from models import monitor, policy
from storage.runs import _jsonable


def _policy_detail(live, drift, age, new_data=None, **extra):
    decision = policy.decide_retrain(live, drift, age, policy.PolicyConfig(live_min_n=20), new_data)
    return {"retrain": decision.retrain, "reasons": decision.reasons, "numbers": decision.numbers,
            "notes": decision.notes, **extra}


def test_a_policy_that_did_not_retrain_says_each_number_against_its_threshold():
    detail = _policy_detail({"n": 40, "mape": 0.112}, {"share_drifted": 0.05, "prediction_psi": 0.03,
                                                       "n_ref": 400, "n_cur": 300}, 2.0)
    assert policy_line("ok", detail) == ("no retrain — live MAPE 11.2 % on 40 sales ≤ 20 %, drift share 0.05 ≤ 0.15, "
                                         "PSI 0.03 ≤ 0.10, champion 2.0 days old ≤ 7")


def test_drift_on_too_few_rows_is_shown_not_counted():
    """It read "PSI 8.27 > 0.10" in a line that began "no retrain": only the notes said why."""
    detail = _policy_detail({"n": 40, "mape": 0.112},
                            {"share_drifted": 0.0, "prediction_psi": 8.27, "n_ref": 25, "n_cur": 20, "min_samples": 30},
                            0.0)
    assert detail["retrain"] is False
    assert policy_line("ok", detail) == (
        "no retrain — live MAPE 11.2 % on 40 sales ≤ 20 %, drift share 0.00 and PSI 8.27 not counted: 25 reference "
        "and 20 current rows, the report needs 30 in each, champion 0.0 days old ≤ 7")


def test_an_old_champion_without_new_prices_says_why_it_was_not_retrained():
    detail = _policy_detail({"n": 0}, {"error": "not measured"}, 9.0, policy.NewData(0, "prices"))
    assert policy_line("ok", detail).endswith("champion 9.0 days old > 7 but no prices since its training data")
    assert policy_line("ok", detail).startswith("no retrain — ")


def test_a_policy_that_retrained_names_its_request_its_reasons_and_the_numbers():
    detail = _policy_detail({"n": 5, "mape": 0.5}, {"error": "no reference"}, 9.0, request_id=12, new_request=True)
    line = policy_line("ok", detail)
    assert line.startswith("retrain (request 12, new) — champion is 9.0 days old > 7 (")
    assert "live MAPE 50.0 % not counted: 5 sales < 20" in line
    assert "drift not measured: no reference" in line and "champion 9.0 days old > 7" in line
    assert policy_line("ok", _policy_detail(None, None, None, request_id=3)).startswith(
        "retrain (request 3, already recorded) — no champion")


def test_a_policy_request_kept_while_training_is_paused_says_it_waits():
    detail = _policy_detail(None, None, None, request_id=4, new_request=True, published=False)
    assert policy_line("ok", detail).startswith("retrain (request 4, new), waits unpublished: training is paused — ")


def test_a_request_or_a_nowcast_the_broker_did_not_take_is_said_so_not_called_paused():
    detail = _policy_detail(None, None, None, request_id=4, new_request=True, published=False,
                            not_sent="OperationalError: gone; the training sweep (hourly) publishes it")
    assert policy_line("ok", detail).startswith(
        "retrain (request 4, new), not sent: OperationalError: gone; the training sweep (hourly) publishes it — ")
    line = monitor_line("ok", {"rollback_deferred": "artifact of version 4 could not be read (timeout)",
                               "champion_not_published": {"champion": 5, "snapshot": 9}, "not_sent": "gone"})
    assert line == ("rollback deferred: artifact of version 4 could not be read (timeout); "
                    "champion v5 not published yet: nowcast not sent: gone")


def test_skipped_and_failed_runs_say_why():
    assert policy_line("skipped", {"reason": "paused"}) == "skipped: paused"
    assert monitor_line("failed", {"error": "OperationalError: gone"}) == "failed: OperationalError: gone"
    assert monitor_line("running", {}) == "running"


def test_the_monitor_line_carries_the_probation_verdict():
    decision = monitor.decide_rollback({"n": 0}, {"n": 0}, monitor.MonitorConfig(min_n=20))
    detail = {"probation": {"champion": 5, "previous": 4, "rollback": False, "reason": decision.reason,
                            "numbers": decision.numbers}}
    assert monitor_line("ok", detail) == "probation v5 vs v4: only 0 common sales < 20: too few to judge, no rollback"
    assert monitor_line("ok", {"rolled_back_to": 4, "shadow": {"contender": 6, "decision": "reject"}}) == \
        "rolled back to v4; shadow v6: reject"
    assert monitor_line("ok", {}).startswith("nothing to judge")
    due = {"champion": 5, "previous": 4, "decided_at": "2026-12-06T00:10:00Z"}
    assert monitor_line("ok", {"rollback_due": due, "rolled_back_to": 4}) == \
        "rollback of v5 to v4 due since 2026-12-06T00:10:00Z; rolled back to v4"


def test_paused_line():
    assert paused_line("nowcast", "maintenance", "2026-12-06T00:10:00Z") == \
        "nowcast (maintenance) since 2026-12-06T00:10:00Z"
    assert paused_line("monitor", "", None) == "monitor"
    assert paused_line("policy", "", "2026-12-06T00:10:00Z", "ops@host") == \
        "policy since 2026-12-06T00:10:00Z by ops@host"


def test_run_details_are_json_safe():
    value = _jsonable({"a": np.float64(0.5), "b": np.int64(3), "c": float("nan"), "d": [np.bool_(True), float("inf")],
                       "e": object})
    assert value["a"] == 0.5 and value["b"] == 3 and isinstance(value["b"], int)
    assert value["c"] is None and value["d"] == [True, None] and isinstance(value["e"], str)
    json.dumps(value, allow_nan=False)


def test_a_reader_without_a_token_gets_the_head_of_the_monitor_s_store_errors_nested_or_not():
    """The monitor's store texts name the endpoint: `rollback_refused` and the shadow decision's
    error (a dict of its own) passed whole to a reader without a token, and `rollback_deferred`
    was cut inside its parenthesis."""
    from fairvalue.queue_reads import public_detail

    endpoint = 'Could not connect to the endpoint URL: "http://minio.corp.internal:9000/b/k"'
    detail = {"rollback_deferred": f"artifact of version 3 could not be read (cannot read s3://b/k: {endpoint})",
              "rollback_refused": f"artifact of version 2 refused: {endpoint}",
              "shadow": {"contender": 4, "decision": "deferred", "error": f"artifact of version 4 could not be "
                         f"read ({endpoint}); nothing changed"}}
    public = public_detail(detail)
    assert "minio" not in json.dumps(public) and "minio" not in monitor_line("ok", public)
    assert public == {"rollback_deferred": "artifact of version 3 could not be read",
                      "rollback_refused": "artifact of version 2 refused",
                      "shadow": {"contender": 4, "decision": "deferred",
                                 "error": "artifact of version 4 could not be read"}}


def test_a_reader_without_a_token_gets_a_failed_run_s_error_type_not_its_text_or_traceback():
    """/v1/queue and the /queue page answered anyone with a failed run's traceback and error text,
    which named the database host, while the same answer hid the workers' host names."""
    from fairvalue.queue_reads import public_detail

    detail = {"error": "OperationalError: connection to server at \"pg-primary.corp.internal\" (10.20.30.40) failed",
              "traceback": 'File "/srv/fairvalue/storage/runs.py", line 38', "not_sent": "OperationalError: redis:6379",
              "request_id": 4}
    public = public_detail(detail)
    assert public == {"error": "OperationalError", "not_sent": "OperationalError", "request_id": 4}
    assert "pg-primary" not in policy_line("failed", public) and "traceback" in detail  # the operator's is whole
