"""What the loops did, in one readable line: pure functions of a task run's stored detail.

The policy's and the monitor's task runs record their whole outcome (tasks/lifecycle.py);
these lines are what `GET /v1/queue`, the queue page and `fairvalue status` show of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairvalue.lifecycle import MONITOR_LOOP, POLICY_LOOP
from models.policy import drift_rows_not_counted
from storage import runs
from tasks import names


def _cmp(value: float, threshold: float) -> str:
    return ">" if value > threshold else "≤"


def policy_numbers_line(numbers: Mapping[str, Any]) -> str:
    """"live MAPE 11.2 % on 40 sales ≤ 20 %, drift share 0.05 ≤ 0.15, PSI 0.03 ≤ 0.10, champion 2.0
    days old ≤ 7": each number the policy looked at against its threshold, or why it was not counted."""
    parts = []
    n, mape, max_mape = numbers.get("live_n") or 0, numbers.get("live_mape"), numbers.get("max_live_mape")
    if numbers.get("live_counted") and mape is not None and max_mape is not None:
        parts.append(f"live MAPE {mape * 100:.1f} % on {n} sales {_cmp(mape, max_mape)} {max_mape * 100:g} %")
    elif mape is None:
        parts.append(f"no live MAPE ({n} sales)")
    else:
        parts.append(f"live MAPE {mape * 100:.1f} % not counted: {n} sales < {numbers.get('live_min_n')}")
    drift = [(name, numbers.get(key), numbers.get(limit)) for key, limit, name in (
        ("share_drifted", "max_share_drifted", "drift share"), ("prediction_psi", "max_prediction_psi", "PSI"))]
    measured = [(name, value, limit) for name, value, limit in drift if value is not None and limit is not None]
    if measured and numbers.get("drift_counted") is False:  # too few rows to judge (policy.py), as live error
        parts.append(" and ".join(f"{name} {value:.2f}" for name, value, _ in measured) + " not counted: "
                     + drift_rows_not_counted(numbers.get("drift_n_ref"), numbers.get("drift_n_cur"),
                                              numbers.get("drift_min_samples")))
    else:
        parts.extend(f"{name} {value:.2f} {_cmp(value, limit)} {limit:.2f}" for name, value, limit in measured)
    parts.extend(f"no {name}" for name, value, limit in drift if value is None or limit is None)
    if numbers.get("drift_error"):
        parts.append(f"drift not measured: {numbers['drift_error']}")
    age, max_age = numbers.get("champion_age_days"), numbers.get("max_champion_age_days")
    if age is None:
        parts.append("no champion")
    elif max_age is not None:
        line = f"champion {age:.1f} days old {_cmp(age, max_age)} {max_age:g}"
        if age > max_age and numbers.get("new_since_training") == 0:  # the age trigger did not count (policy.py)
            line += f" but no {numbers.get('new_since_training_of') or 'sales'} since its training data"
        parts.append(line)
    return ", ".join(parts)


def _unfinished(status: str, detail: Mapping[str, Any]) -> str | None:
    if status == runs.RUNNING:
        return runs.RUNNING
    if status == runs.FAILED:
        return f"{runs.FAILED}: {detail.get('error') or 'no error recorded'}"
    if status == runs.SKIPPED:
        return f"{runs.SKIPPED}: {detail.get('reason') or 'no reason recorded'}"
    if status == runs.ABANDONED:
        return f"{runs.ABANDONED}: {detail.get('abandoned') or 'its worker died'}"
    return None


def policy_line(status: str, detail: Mapping[str, Any]) -> str:
    """The policy run's outcome: "no retrain — <numbers>" or "retrain (request 12, new) — <reasons>; <numbers>"."""
    unfinished = _unfinished(status, detail)
    if unfinished:
        return unfinished
    numbers = detail.get("numbers") or {}
    if not detail.get("retrain"):
        return "no retrain — " + (policy_numbers_line(numbers) if numbers else "no numbers recorded")
    request = detail.get("request_id")
    head = f"retrain (request {request}, {'new' if detail.get('new_request') else 'already recorded'})" \
        if request is not None else "retrain"
    if detail.get("not_sent"):  # the broker did not take it; the sweep publishes it
        head += f", not sent: {detail['not_sent']}"
    elif detail.get("published") is False:
        head += ", waits unpublished: training is paused"
    reasons = "; ".join(detail.get("reasons") or [])
    return f"{head} — {reasons}" + (f" ({policy_numbers_line(numbers)})" if numbers else "")


def monitor_line(status: str, detail: Mapping[str, Any]) -> str:
    """The monitor run's outcome: the probation verdict, a rollback, a shadow decision, or nothing to judge."""
    unfinished = _unfinished(status, detail)
    if unfinished:
        return unfinished
    parts = []
    probation = detail.get("probation")
    if probation:
        parts.append(f"probation v{probation.get('champion')} vs v{probation.get('previous')}: "
                     f"{probation.get('reason')}")
    due = detail.get("rollback_due")
    if due:  # decided by an earlier run, which could not read the model it restores
        parts.append(f"rollback of v{due.get('champion')} to v{due.get('previous')} due since {due.get('decided_at')}")
    if detail.get("rolled_back_to") is not None:
        parts.append(f"rolled back to v{detail['rolled_back_to']}")
    if detail.get("rollback_refused"):
        parts.append(f"rollback refused: {detail['rollback_refused']}")
    if detail.get("rollback_deferred"):
        parts.append(f"rollback deferred: {detail['rollback_deferred']}")
    shadow = detail.get("shadow")
    if shadow:
        parts.append(f"shadow v{shadow.get('contender')}: {shadow.get('decision')}"
                     + (f" ({shadow['error']})" if shadow.get("error") else ""))
    if detail.get("champion_not_published"):
        asked = f"nowcast not sent: {detail['not_sent']}" if detail.get("not_sent") else "nowcast asked"
        parts.append(f"champion v{detail['champion_not_published'].get('champion')} not published yet: {asked}")
    return "; ".join(parts) or "nothing to judge: no champion on probation, no contender due"


LOOP_TASKS = {names.POLICY: (POLICY_LOOP, policy_line), names.MONITOR: (MONITOR_LOOP, monitor_line)}


def paused_line(loop: str, reason: str, since: str | None, by: str = "") -> str:
    """"nowcast (maintenance) since 2026-12-06T00:10:00Z by ops@host"."""
    return (loop + (f" ({reason})" if reason else "") + (f" since {since}" if since else "")
            + (f" by {by}" if by else ""))
