"""Promotion gates: may a freshly trained contender replace the champion?

Pure: plain functions over metrics dicts (models.metrics.valuation_metrics) and segment tables
(models.diagnostics.segment_metrics) that return a GateDecision; `as_dict()` is JSON-friendly and
meant to be stored with the promotion decision.

Both models are expected to be scored on the same forward window (sales, or a daily market's prices,
neither saw), and the floor baseline (valuation_metrics of "fair value = the previous day's floor";
for a daily market the previous price) on that window too. The checks' details name what the market
has (GateConfig.observations, market_level): "0 usable card-day prices", not "0 usable sales".

Rules, in order (every threshold is a GateConfig field):

1. Hard checks. Any failure -> "reject", whatever the champion does. A check whose number is missing
   (nothing usable scored, no band, no sanity entry) fails: a gate that cannot be evaluated fails closed.
   - sanity_finite: no prediction has a NaN/inf fair value, p10 or p90 (sanity()["n_nan"] == 0).
   - sanity_positive: no finite fair value is <= 0 (sanity()["n_nonpositive"] == 0).
   - sanity_band_order: every finite row has p10 <= fair value <= p90 (sanity()["n_band_order"] == 0).
   - sanity_monotone_in_floor: sanity()["monotone_in_floor"] is True (a higher floor never lowers a value).
   - eval_n: metrics n >= min_eval_n (window_start widens a quiet market's window to hold that many).
   - bias: |metrics bias| <= max_abs_bias (bias = median signed relative error).
   - band_coverage: coverage_bounds[0] <= metrics band_coverage <= coverage_bounds[1], both inclusive;
     coverage_bounds=None disables the check.
   - beats_floor: when must_beat_floor, contender MAPE < floor baseline MAPE (strictly); no floor MAPE
     fails the check. When not must_beat_floor the check passes and the floor numbers are still recorded.
   - segments: for every (segmentation, value) where both the contender's and the champion's segment
     rows have n >= min_segment_n and a finite MAPE, contender MAPE <= champion MAPE * (1 + segment_tolerance).
     Passes (with a detail saying why) when there is no champion or either side has no segment table.
2. No champion, or a champion without a finite MAPE on this window (it cannot be compared, and a
   champion that cannot be scored is exactly the one to replace) -> "promote".
3. contender MAPE <= champion MAPE * (1 - mape_margin) -> "promote".
4. contender MAPE < champion MAPE and shadow_enabled -> "shadow" (better, but not by the margin: let it
   prove itself on live sales before promoting).
5. Otherwise -> "reject".

Comparisons are made on values rounded to 12 decimals, so a number exactly at a threshold counts as
at it (0.1 * 0.98 is not exactly 0.098 in floating point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.drift import to_jsonable
from models.metrics import finite_or_none as _num

PROMOTE, SHADOW, REJECT = "promote", "shadow", "reject"
DECISIONS = (PROMOTE, SHADOW, REJECT)
ROLLBACK = "rollback"  # the monitor's or an operator's, recorded beside the gates' decisions
RECORDED = (*DECISIONS, ROLLBACK)  # every decision a promotion_decisions row can hold
# Who recorded a decision (promotion_decisions.decided_by): the gates after a training, the monitor
# (a rollback for live error, a shadow's verdict, an artifact it refused) or an operator (CLI, API).
BY_GATES, BY_MONITOR, BY_OPERATOR = "gates", "monitor", "operator"
DECIDERS = (BY_GATES, BY_MONITOR, BY_OPERATOR)
_ROUND = 12


@dataclass
class GateConfig:
    """Thresholds of the promotion gates (see the module docstring for the rules)."""

    mape_margin: float = 0.02
    max_abs_bias: float = 0.05
    segment_tolerance: float = 0.10
    min_segment_n: int = 30
    coverage_bounds: tuple[float, float] | None = (0.70, 0.90)
    must_beat_floor: bool = True
    shadow_enabled: bool = True
    min_eval_n: int = 50
    # What the market has, as the checks' details name it (a refusal said "0 usable sales" to the
    # cards, which have no sales): what one scored row is, and the market level the monotone check
    # lifts. Set per kind of collection (fairvalue.kinds gate_config).
    observations: str = "sales"
    market_level: str = "floor"

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass
class Evaluation:
    """One model scored on the gate window.

    metrics: valuation_metrics on the window. segments: segment_metrics table (columns segment,
    value, n, mape, ...), may be empty. sanity: sanity() of the window's predictions.
    """

    name: str
    metrics: dict[str, Any]
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)
    sanity: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({"name": self.name, "metrics": self.metrics, "segments": self.segments,
                            "sanity": self.sanity})


@dataclass
class GateDecision:
    """decision: "promote", "shadow" or "reject". reason: one sentence. checks: one dict per check
    {name, passed, value, threshold, detail, hard}; the last one, beats_champion (hard=False), is the
    comparison with the champion. numbers: every number used (metrics, sanity, floor baseline,
    per-segment comparisons, config)."""

    decision: str
    reason: str
    checks: list[dict[str, Any]]
    numbers: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        """Names of the failed hard checks."""
        return [c["name"] for c in self.checks if c["hard"] and not c["passed"]]

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({"decision": self.decision, "reason": self.reason, "checks": self.checks,
                            "numbers": self.numbers})


def sanity(fair_value: Any, p10: Any, p90: Any, monotone_in_floor: bool) -> dict[str, Any]:
    """Sanity counts of a set of predictions.

    n_predictions: rows. n_nan: rows where the fair value, or p10 or p90 when a band is given, is NaN
    or +-inf. n_nonpositive: rows with a finite fair value <= 0. n_band_order: rows with all three
    finite and not p10 <= fair value <= p90 (0 without a band). monotone_in_floor: passed through (the
    caller measures it, e.g. by re-predicting with a higher floor).
    """
    fair = np.asarray(fair_value, dtype=float).ravel()
    has_band = p10 is not None and p90 is not None
    lo = np.asarray(p10, dtype=float).ravel() if has_band else np.full(len(fair), np.nan)
    hi = np.asarray(p90, dtype=float).ravel() if has_band else np.full(len(fair), np.nan)
    if len(lo) != len(fair) or len(hi) != len(fair):
        raise ValueError(f"{len(fair)} fair values for {len(lo)} p10 and {len(hi)} p90")
    fair_ok = np.isfinite(fair)
    band_ok = np.isfinite(lo) & np.isfinite(hi)
    bad = ~fair_ok | (~band_ok if has_band else False)
    order_bad = fair_ok & band_ok & ~((lo <= fair) & (fair <= hi))
    return {
        "n_predictions": int(len(fair)),
        "n_nan": int(np.sum(bad)),
        "n_nonpositive": int(np.sum(fair_ok & (fair <= 0))),
        "n_band_order": int(np.sum(order_bad)),
        "monotone_in_floor": bool(monotone_in_floor),
    }


# --------------------------------------------------------------------------- helpers


def window_start(sale_times: pd.Series, days: float, min_sales: int,
                 keep_before: int = 0) -> tuple[pd.Timestamp, bool]:
    """Where the gates' forward window starts, and whether that is earlier than `days` before the
    newest sale: it is, at the `min_sales`-th newest sale, when those days hold fewer. A market
    that went quiet held only a handful of sales in its last days, and the eval_n check rejected
    every contender until it traded again. Never widened past the point that leaves `keep_before`
    sales before the window to fit on (a young market's window stays its calendar days, and
    eval_n says why it rejects)."""
    times = np.sort(pd.to_datetime(sale_times).to_numpy())
    calendar = times[-1] - pd.Timedelta(days=days).to_timedelta64()
    start = min(calendar, times[max(len(times) - min_sales, 0)])
    if len(times) > keep_before:
        start = min(calendar, max(start, times[keep_before]))
    return pd.Timestamp(start), bool(start < calendar)


def _le(a: float, b: float) -> bool:
    return round(a - b, _ROUND) <= 0


def _lt(a: float, b: float) -> bool:
    return round(a - b, _ROUND) < 0


def _check(name: str, passed: bool, value: Any, threshold: Any, detail: str, hard: bool = True) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail,
            "hard": hard}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _sanity_checks(s: Mapping[str, Any], market_level: str) -> list[dict[str, Any]]:
    checks = []
    for name, key, what in (
        ("sanity_finite", "n_nan", "NaN/inf predictions"),
        ("sanity_positive", "n_nonpositive", "non-positive fair values"),
        ("sanity_band_order", "n_band_order", "rows outside p10 <= fair value <= p90"),
    ):
        count = s.get(key)
        if count is None:
            checks.append(_check(name, False, None, 0, f"sanity has no {key}"))
        else:
            checks.append(_check(name, int(count) == 0, int(count), 0, f"{int(count)} {what}"))
    mono = s.get("monotone_in_floor")
    checks.append(_check("sanity_monotone_in_floor", mono is True, mono, True,
                         f"a higher {market_level} never lowers a fair value" if mono is True
                         else f"a higher {market_level} lowers some fair values" if mono is False
                         else "sanity has no monotone_in_floor"))
    return checks


def _segment_key(segment: Any, value: Any) -> tuple[str, str]:
    # str() so that categorical, int and str values from two tables compare without dtype trouble.
    return str(segment), str(value)


def _segment_comparisons(contender: pd.DataFrame | None, champion: pd.DataFrame | None,
                         config: GateConfig) -> list[dict[str, Any]]:
    """One record per contender segment row with n >= min_segment_n: both sides' n and MAPE, the limit
    and whether it was compared (both n >= min_segment_n and finite MAPEs) and passed."""
    champ_rows = {}
    if champion is not None and not champion.empty:
        for rec in champion.to_dict(orient="records"):
            champ_rows[_segment_key(rec.get("segment"), rec.get("value"))] = rec
    out = []
    for rec in contender.to_dict(orient="records"):
        n_c = _num(rec.get("n")) or 0
        if n_c < config.min_segment_n:
            continue
        other = champ_rows.get(_segment_key(rec.get("segment"), rec.get("value")), {})
        n_h = _num(other.get("n")) or 0
        m_c, m_h = _num(rec.get("mape")), _num(other.get("mape"))
        compared = n_h >= config.min_segment_n and m_c is not None and m_h is not None
        limit = m_h * (1 + config.segment_tolerance) if m_h is not None else None
        out.append({
            "segment": str(rec.get("segment")), "value": rec.get("value"),
            "n_contender": int(n_c), "n_champion": int(n_h),
            "mape_contender": m_c, "mape_champion": m_h, "limit": limit,
            "compared": compared, "passed": (not compared) or _le(m_c, limit),
        })
    return out


def _segments_check(contender: Evaluation, champion: Evaluation | None,
                    config: GateConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    threshold = 1 + config.segment_tolerance
    if champion is None:
        return _check("segments", True, None, threshold, "no champion to compare segments with"), []
    if contender.segments is None or contender.segments.empty:
        return _check("segments", True, None, threshold, "the contender has no segment metrics"), []
    if champion.segments is None or champion.segments.empty:
        return _check("segments", True, None, threshold, "the champion has no segment metrics"), []
    rows = _segment_comparisons(contender.segments, champion.segments, config)
    compared = [r for r in rows if r["compared"]]
    if not compared:
        return _check("segments", True, None, threshold,
                      f"no segment has n >= {config.min_segment_n} on both sides"), rows

    def ratio(r: dict[str, Any]) -> float:
        if r["mape_champion"] > 0:
            return r["mape_contender"] / r["mape_champion"]
        return 1.0 if r["mape_contender"] == 0 else math.inf

    worst = max(ratio(r) for r in compared)
    failing = [r for r in compared if not r["passed"]]
    if failing:
        detail = "worse than the champion by more than {:.0%}: {}".format(config.segment_tolerance, ", ".join(
            f"{r['segment']}={r['value']} {r['mape_contender']:.4f} > {r['limit']:.4f} (n={r['n_contender']})"
            for r in failing))
    else:
        detail = f"{len(compared)} segments compared, none worse than the champion by more than " \
                 f"{config.segment_tolerance:.0%}"
    return _check("segments", not failing, worst, threshold, detail), rows


# --------------------------------------------------------------------------- decision


def decide(contender: Evaluation, champion: Evaluation | None, floor_baseline: Mapping[str, Any] | None,
           config: GateConfig | None = None) -> GateDecision:
    """Apply the gates (rules in the module docstring) and record every number used."""
    config = config or GateConfig()
    m = contender.metrics or {}
    mape, n, bias = _num(m.get("mape")), int(_num(m.get("n")) or 0), _num(m.get("bias"))
    checks = _sanity_checks(contender.sanity or {}, config.market_level)

    checks.append(_check("eval_n", n >= config.min_eval_n and mape is not None, n, config.min_eval_n,
                         f"{n} usable {config.observations} in the evaluation window"))

    if bias is None:
        checks.append(_check("bias", False, None, config.max_abs_bias, f"no bias (no usable {config.observations})"))
    else:
        checks.append(_check("bias", _le(abs(bias), config.max_abs_bias), bias, config.max_abs_bias,
                             f"|bias| {abs(bias):.4f} {'<=' if _le(abs(bias), config.max_abs_bias) else '>'} "
                             f"{config.max_abs_bias}"))

    coverage = _num(m.get("band_coverage"))
    bounds = config.coverage_bounds
    if bounds is None:
        checks.append(_check("band_coverage", True, coverage, None, "disabled"))
    elif coverage is None:
        checks.append(_check("band_coverage", False, None, list(bounds),
                             f"no band coverage (no band or no {config.observations})"))
    else:
        ok = _le(bounds[0], coverage) and _le(coverage, bounds[1])
        checks.append(_check("band_coverage", ok, coverage, list(bounds),
                             f"{coverage:.4f} {'inside' if ok else 'outside'} [{bounds[0]}, {bounds[1]}]"))

    floor_mape = _num((floor_baseline or {}).get("mape"))
    if not config.must_beat_floor:
        checks.append(_check("beats_floor", True, mape, floor_mape, "disabled"))
    elif floor_mape is None or mape is None:
        checks.append(_check("beats_floor", False, mape, floor_mape,
                             "no floor baseline MAPE" if floor_mape is None else "no contender MAPE"))
    else:
        ok = _lt(mape, floor_mape)
        checks.append(_check("beats_floor", ok, mape, floor_mape,
                             f"MAPE {mape:.4f} {'<' if ok else '>='} floor baseline {floor_mape:.4f}"))

    segment_check, segment_rows = _segments_check(contender, champion, config)
    checks.append(segment_check)

    champ_mape = _num((champion.metrics or {}).get("mape")) if champion is not None else None
    needed = champ_mape * (1 - config.mape_margin) if champ_mape is not None else None
    if champion is None:
        checks.append(_check("beats_champion", True, mape, None, "no champion", hard=False))
    elif champ_mape is None:
        checks.append(_check("beats_champion", True, mape, None, "the champion has no usable MAPE", hard=False))
    else:
        ok = mape is not None and _le(mape, needed)
        checks.append(_check("beats_champion", ok, mape, needed,
                             f"MAPE {_fmt(mape)} vs champion {champ_mape:.4f} x (1 - {config.mape_margin})"
                             f" = {needed:.4f}", hard=False))

    numbers = {
        "contender": {"name": contender.name, "metrics": dict(m), "sanity": dict(contender.sanity or {})},
        "champion": None if champion is None else {"name": champion.name, "metrics": dict(champion.metrics or {}),
                                                   "sanity": dict(champion.sanity or {})},
        "floor_baseline": None if floor_baseline is None else dict(floor_baseline),
        "champion_mape_needed": needed,
        "segments": segment_rows,
        "config": asdict(config),
    }

    failed = [c for c in checks if c["hard"] and not c["passed"]]
    if failed:
        reason = "Rejected because these checks failed: " + "; ".join(f"{c['name']} ({c['detail']})"
                                                                       for c in failed) + "."
        return GateDecision(REJECT, reason, checks, numbers)
    if champion is None:
        return GateDecision(PROMOTE, "Promoted: passed every check and there is no champion to beat.",
                            checks, numbers)
    if champ_mape is None:
        return GateDecision(PROMOTE, "Promoted: passed every check and the champion has no usable MAPE "
                                     "on this window.", checks, numbers)
    if _le(mape, needed):
        reason = f"Promoted: MAPE {mape:.4f} <= champion {champ_mape:.4f} x (1 - {config.mape_margin}) = {needed:.4f}."
        return GateDecision(PROMOTE, reason, checks, numbers)
    if _lt(mape, champ_mape):
        if config.shadow_enabled:
            reason = (f"Shadowed: MAPE {mape:.4f} beats the champion's {champ_mape:.4f} but not by the "
                      f"{config.mape_margin:.0%} margin (needs <= {needed:.4f}).")
            return GateDecision(SHADOW, reason, checks, numbers)
        reason = (f"Rejected: MAPE {mape:.4f} beats the champion's {champ_mape:.4f} by less than the "
                  f"{config.mape_margin:.0%} margin and shadowing is disabled.")
        return GateDecision(REJECT, reason, checks, numbers)
    reason = f"Rejected: MAPE {mape:.4f} is not better than the champion's {champ_mape:.4f}."
    return GateDecision(REJECT, reason, checks, numbers)
