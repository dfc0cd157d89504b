"""The model lifecycle as plain functions. Celery tasks (tasks/lifecycle.py), the CLI and the
API's operator routes are thin adapters around these. The database decides what runs: a message
only carries a request id, and every state change is a conditional update (storage/requests.py).

Where each loop's logic lives:

- loops.py              pausing a loop (set_paused, is_paused; the loop names)
- live_error.py         sales scored against the values published before them (policy, monitor)
- policy.py             the retrain policy (daily): run_policy
- training_requests.py  recording a request once per key; refusing parameters that cannot train
- gating.py             train_and_gate: contender and champion on one forward window, the gates
- training.py           training a request under a lease: train_request (the training queue)
- sweep.py              the hourly sweep: fail the dead, abandon dead runs; what the sweep and a
                        resume publish (a retry's backoff left as countdown); mark_(un)published
- monitor.py            the hourly monitor: probation rollback, settling a shadowed contender
- champion_changes.py   reading an artifact back before an alias moves; rolling back (monitor, operators)
- operators.py          an operator's retrain, promote, rollback and the decision trail

Decisions are written and read by storage/decisions.py. The names below are what callers use
(`lifecycle.X`); a module's private helpers stay in it.
"""

from fairvalue.lifecycle.gating import (
    GATE_SEGMENTATIONS,
    TRAINING_REFUSALS,
    NothingToTrain,
    train_and_gate,
)
from fairvalue.lifecycle.live_error import live_scored
from fairvalue.lifecycle.loops import (
    LOOPS,
    MONITOR_LOOP,
    NOWCAST_LOOP,
    POLICY_LOOP,
    TRAINING_LOOP,
    is_paused,
    set_paused,
)
from fairvalue.lifecycle.monitor import run_monitor
from fairvalue.lifecycle.operators import (
    MAX_REASON_LENGTH,
    MAX_VERSION,
    ArtifactRefused,
    BadReason,
    IdempotencyKeyReused,
    RejectedByGates,
    decisions,
    enqueue_retrain,
    operator_promote,
    operator_reason,
    operator_rollback,
)
from fairvalue.lifecycle.policy import run_policy
from fairvalue.lifecycle.sweep import (
    abandon_stale_runs,
    mark_published,
    mark_unpublished,
    requests_to_publish,
    requests_to_republish,
)
from fairvalue.lifecycle.training import RESEND_MARGIN_SECONDS, TrainingTimedOut, forget_resend, train_request
from fairvalue.lifecycle.training_requests import (
    BadTrainingParams,
    PolicyOutcome,
    check_training_params,
    record_request,
)
from storage.decisions import standing_rejection

__all__ = [
    "GATE_SEGMENTATIONS", "LOOPS", "MAX_REASON_LENGTH", "MAX_VERSION", "MONITOR_LOOP", "NOWCAST_LOOP", "POLICY_LOOP",
    "RESEND_MARGIN_SECONDS", "TRAINING_LOOP", "TRAINING_REFUSALS", "ArtifactRefused", "BadReason", "BadTrainingParams",
    "IdempotencyKeyReused", "NothingToTrain", "PolicyOutcome", "RejectedByGates", "TrainingTimedOut",
    "abandon_stale_runs", "check_training_params", "decisions", "enqueue_retrain", "forget_resend", "is_paused",
    "live_scored", "mark_published", "mark_unpublished", "operator_promote", "operator_reason", "operator_rollback",
    "record_request", "requests_to_publish", "requests_to_republish", "run_monitor", "run_policy",
    "set_paused", "standing_rejection", "train_and_gate", "train_request",
]
