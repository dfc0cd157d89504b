"""Recording a training request (the policy's or an operator's): once per idempotency key, and
never with parameters the collection could not train with. Publishing it is the caller's, after
this commits (tasks/lifecycle.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fairvalue import kinds, pipeline
from fairvalue.lifecycle.gating import train_params
from fairvalue.settings import Settings
from storage import requests
from storage.db import session_scope
from storage.tables import Collection, utcnow


@dataclass
class PolicyOutcome:
    retrain: bool
    reasons: list[str]
    numbers: dict[str, Any]
    request_id: int | None
    new_request: bool
    request_state: str | None = None  # of a request recorded before (an operator's retried Idempotency-Key)
    notes: list[str] = field(default_factory=list)  # why numbers were not counted (policy.PolicyDecision)


def record_request(settings: Settings, key: str, reason: str, trigger: dict, params: dict,
                    check_params: bool = False) -> PolicyOutcome:
    """Record a training request (once per key). With `check_params`, BadTrainingParams first when
    the collection could not train with them: nothing is recorded."""
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        if check_params:
            check_training_params(coll, settings, params)
        request, new = requests.record(session, coll, key, reason, trigger=trigger, params=params,
                                       data_cutoff=utcnow())
        return PolicyOutcome(True, [reason], trigger, request.id, new)


class BadTrainingParams(ValueError):
    """Overrides a training of the collection could not use; the message names each field."""


def check_training_params(coll: Collection, settings: Settings, overrides: dict) -> None:
    """Refuse unknown names, wrong types and values out of range for the collection's kind, so
    a bad request is never recorded nor queued (it would only fail on the training worker)."""
    try:
        if kinds.is_daily(coll):
            kinds.DAILY.params(overrides)
        else:
            train_params(settings, overrides)
    except ValidationError as exc:  # one reason per bad field: "windows.0: Input should be ..."
        raise BadTrainingParams(_field_reasons(exc.errors())) from None
    except ValueError as exc:
        raise BadTrainingParams(str(exc)) from None


def _field_reasons(errors: list[dict]) -> str:
    """One reason per bad field. A container whose item failed is not named again: pydantic
    drops the bad item and then also reports the container as too short."""
    locs = [tuple(e["loc"]) for e in errors]
    reasons = [f"{'.'.join(map(str, loc))}: {e['msg']}" for loc, e in zip(locs, errors, strict=True)
               if not any(len(other) > len(loc) and other[:len(loc)] == loc for other in locs)]
    return "; ".join(reasons)
