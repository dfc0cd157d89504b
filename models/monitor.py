"""Post-promotion monitor: roll a new champion back when it does worse live than the one it replaced.

Pure: decide_rollback() compares two valuation_metrics dicts computed on the SAME sales (the new
champion's published values and the previous champion's shadow values, paired by event with
models.live.paired) and returns a MonitorDecision.

Rule (thresholds are MonitorConfig fields):
- n = the smaller of the two metrics' n (each model's usable pairs; they differ only when one model
  produced non-finite values). n < min_n -> no rollback: too few sales to judge either way.
- otherwise rollback when champion MAPE > previous MAPE * (1 + rollback_margin) (compared at 12
  decimals, so exactly at the limit does not roll back). The margin keeps noise from undoing a
  promotion that the gates already judged on a larger window.
- a missing MAPE on either side with enough sales -> no rollback (nothing to compare).
probation_days is not used here: the caller only asks during the probation period after a promotion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from models.drift import to_jsonable
from models.metrics import finite_or_none as _num


@dataclass
class MonitorConfig:
    probation_days: float = 7.0
    min_n: int = 20
    rollback_margin: float = 0.10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MonitorDecision:
    rollback: bool
    reason: str
    numbers: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({"rollback": self.rollback, "reason": self.reason, "numbers": self.numbers})


def decide_rollback(champion_live: Mapping[str, Any], previous_live: Mapping[str, Any],
                    config: MonitorConfig | None = None) -> MonitorDecision:
    """Roll back when the champion's live MAPE exceeds the previous champion's by more than the margin
    on at least min_n common sales (rules in the module docstring)."""
    config = config or MonitorConfig()
    champion_live, previous_live = champion_live or {}, previous_live or {}
    n_champion = int(_num(champion_live.get("n")) or 0)
    n_previous = int(_num(previous_live.get("n")) or 0)
    n = min(n_champion, n_previous)
    mape, prev = _num(champion_live.get("mape")), _num(previous_live.get("mape"))
    limit = prev * (1 + config.rollback_margin) if prev is not None else None
    numbers = {
        "n": n, "n_champion": n_champion, "n_previous": n_previous, "min_n": config.min_n,
        "champion_mape": mape, "previous_mape": prev, "rollback_margin": config.rollback_margin, "limit": limit,
        "champion": dict(champion_live), "previous": dict(previous_live),
    }
    if n < config.min_n:
        return MonitorDecision(False, f"only {n} common sales < {config.min_n}: too few to judge, no rollback",
                               numbers)
    if mape is None or prev is None:
        return MonitorDecision(False, "no live MAPE on one side: nothing to compare, no rollback", numbers)
    if round(mape - limit, 12) > 0:
        return MonitorDecision(True, f"champion live MAPE {mape:.4f} > previous champion's {prev:.4f} x "
                                     f"(1 + {config.rollback_margin}) = {limit:.4f} on {n} sales", numbers)
    return MonitorDecision(False, f"champion live MAPE {mape:.4f} <= previous champion's {prev:.4f} x "
                                  f"(1 + {config.rollback_margin}) = {limit:.4f} on {n} sales", numbers)
