"""The daily retrain policy: should a new model be trained today, and under which request key?

Pure: decide_retrain() looks at the champion's live error, the drift report's summary and the
champion's age and returns a PolicyDecision; idempotency_key() names the request so that the same
collection, day and kinds of reason never produce two training requests.

Triggers (each threshold a PolicyConfig field; a trigger fires on strictly more than its threshold,
so a number exactly at a threshold does not retrain):
- "no champion": champion_age_days is None (there is no champion at all). Always retrain.
- live error: live["mape"] > max_live_mape, counted only when live["n"] >= live_min_n (a handful of
  sales says little). Reason "live_mape 0.23 > 0.20 on 45 sales".
- feature drift: drift_summary["share_drifted"] > max_share_drifted. Reason "feature drift share 0.40 > 0.15".
- prediction drift: drift_summary["prediction_psi"] > max_prediction_psi. Reason
  "prediction drift psi 0.31 > 0.10".
  Both drift triggers count only when the drift report had the rows for a verdict: the rule of its
  own `drifted` (models.drift.enough_samples on its n_ref, n_cur and min_samples); a psi of 7 sales
  says little. When not counted, `notes` says why.
- age: champion_age_days > max_champion_age_days. Reason "champion is 9.0 days old > 7". Counted
  only when something new arrived since the champion's training data ended (`new_data`, the caller's
  count of clean sales, or prices for a daily-priced collection): retraining a silent market's old
  champion on the same data would only be rejected by the gates, every day. When not counted,
  `notes` says "champion is 9.0 days old but no sales since its training data (ended ...)".
Missing, None or non-finite numbers never trigger (a drift report that failed is not drift); they
are recorded in `numbers` and explained in `notes`. Every trigger that fires is listed, in the order above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from models.drift import MIN_SAMPLES, enough_samples, to_jsonable
from models.metrics import finite_or_none as _num

# Reason kinds, matched by the fixed prefix each reason starts with (see decide_retrain).
REASON_KINDS = (
    ("no champion", "no_champion"),
    ("live_mape ", "live_error"),
    ("feature drift ", "feature_drift"),
    ("prediction drift ", "prediction_drift"),
    ("champion is ", "age"),
)


@dataclass
class PolicyConfig:
    max_live_mape: float = 0.20
    live_min_n: int = 30
    max_share_drifted: float = 0.15
    max_prediction_psi: float = 0.10
    max_champion_age_days: float = 7.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NewData:
    """What arrived after the champion's training data ended: `count` observations (`what`:
    "sales", or "prices" for a daily-priced collection) after `since` (its data_end, as text)."""

    count: int
    what: str = "sales"
    since: str | None = None


@dataclass
class PolicyDecision:
    """retrain: whether to request a training run. reasons: the triggers that fired (empty when not
    retraining). numbers: every number looked at and its threshold. notes: why numbers were not counted."""

    retrain: bool
    reasons: list[str]
    numbers: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({"retrain": self.retrain, "reasons": self.reasons, "numbers": self.numbers,
                            "notes": self.notes})


def _show(value: float, threshold: float) -> str:
    """Two decimals, or four when two would print the value equal to its threshold (0.2004 > 0.20)."""
    return f"{value:.2f}" if f"{value:.2f}" != f"{threshold:.2f}" else f"{value:.4f}"


def drift_rows_not_counted(n_ref: float | None, n_cur: float | None, min_samples: Any) -> str:
    """Why drift was not counted, as the policy's notes and the queue page's line both say it."""
    def rows(n: float | None) -> str:
        return "no" if n is None else f"{n:g}"

    return f"{rows(n_ref)} reference and {rows(n_cur)} current rows, the report needs {min_samples} in each"


def decide_retrain(live: Mapping[str, Any] | None, drift_summary: Mapping[str, Any] | None,
                   champion_age_days: float | None, config: PolicyConfig | None = None,
                   new_data: NewData | None = None) -> PolicyDecision:
    """Retrain when any trigger in the module docstring fires.

    live: valuation_metrics of the champion's published values against the sales since (or None).
    drift_summary: DriftReport.summary (keys share_drifted, prediction_psi; either may be None) or
    None; an "error" key is recorded. champion_age_days: None means there is no champion.
    new_data: what arrived since the champion's training data ended; None when not known (a
    version registered without its data_end), and then age counts alone.
    """
    config = config or PolicyConfig()
    live = live or {}
    drift = drift_summary or {}
    reasons: list[str] = []
    notes: list[str] = []

    if champion_age_days is None:
        reasons.append("no champion")

    n = int(_num(live.get("n")) or 0)
    mape = _num(live.get("mape"))
    live_counted = n >= config.live_min_n and mape is not None
    if live_counted and mape > config.max_live_mape:
        reasons.append(f"live_mape {_show(mape, config.max_live_mape)} > {config.max_live_mape:.2f} on {n} sales")
    elif not live_counted:
        notes.append(f"live error not counted: {n} sales < {config.live_min_n}" if n < config.live_min_n
                     else "live error not counted: no live MAPE")

    share = _num(drift.get("share_drifted"))
    psi = _num(drift.get("prediction_psi"))
    drift_n_ref, drift_n_cur = _num(drift.get("n_ref")), _num(drift.get("n_cur"))
    min_samples = int(_num(drift.get("min_samples")) or MIN_SAMPLES)
    drift_counted = enough_samples(drift_n_ref, drift_n_cur, min_samples)
    if drift_counted:
        if share is not None and share > config.max_share_drifted:
            reasons.append(
                f"feature drift share {_show(share, config.max_share_drifted)} > {config.max_share_drifted:.2f}")
        if psi is not None and psi > config.max_prediction_psi:
            reasons.append(
                f"prediction drift psi {_show(psi, config.max_prediction_psi)} > {config.max_prediction_psi:.2f}")
    if drift_summary is None:
        notes.append("no drift summary")
    elif drift.get("error"):
        notes.append(f"drift summary error: {drift['error']}")
    elif not drift_counted:
        notes.append(f"drift not counted: {drift_rows_not_counted(drift_n_ref, drift_n_cur, min_samples)}")

    age = _num(champion_age_days)
    if age is not None and age > config.max_champion_age_days:
        if new_data is not None and new_data.count <= 0:
            ended = f" (ended {new_data.since})" if new_data.since else ""
            notes.append(f"champion is {age:.1f} days old but no {new_data.what} since its training data{ended}: "
                         "nothing new to learn")
        else:
            reasons.append(f"champion is {age:.1f} days old > {config.max_champion_age_days:g}")

    numbers = {
        "live_n": n, "live_mape": mape, "live_counted": live_counted,
        "max_live_mape": config.max_live_mape, "live_min_n": config.live_min_n,
        "share_drifted": share, "max_share_drifted": config.max_share_drifted,
        "prediction_psi": psi, "max_prediction_psi": config.max_prediction_psi,
        "drift_error": drift.get("error"),
        "drift_n_ref": drift_n_ref, "drift_n_cur": drift_n_cur, "drift_min_samples": min_samples,
        "drift_counted": drift_counted,
        "champion_age_days": age, "max_champion_age_days": config.max_champion_age_days,
        "new_since_training": new_data.count if new_data else None,
        "new_since_training_of": new_data.what if new_data else None,
        "training_data_end": new_data.since if new_data else None,
    }
    return PolicyDecision(bool(reasons), reasons, numbers, notes)


def reason_kind(reason: str) -> str:
    """The kind of a decide_retrain reason ("live_error", "age", ...), without its numbers. Another
    reason becomes a slug of its words before the first digit, so its numbers never change the kind."""
    for prefix, kind in REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    words = re.split(r"\d", reason, maxsplit=1)[0]
    return re.sub(r"[^a-z]+", "_", words.lower()).strip("_") or "other"


def idempotency_key(collection: str, day: date, reasons: list[str]) -> str:
    """"<collection>:<YYYY-MM-DD>:<kinds>", the kinds of the reasons deduplicated, sorted and joined by
    commas, e.g. "cryptopunks:2021-12-01:age,live_error". Numbers in the reasons do not enter it, so
    the same day and kinds of reason give the same key however the numbers move during the day.
    A datetime is reduced to its date (the caller passes a UTC day)."""
    if not reasons:
        raise ValueError("an idempotency key needs at least one reason")
    if isinstance(day, datetime):
        day = day.date()
    kinds = sorted({reason_kind(r) for r in reasons})
    return f"{collection}:{day.isoformat()}:{','.join(kinds)}"
