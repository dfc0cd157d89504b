"""The model lifecycle as plain functions: retrain policy, training a request under a lease,
gates, the post-promotion monitor, the sweep, and the operators' controls.

Celery tasks (tasks/lifecycle.py) and the CLI are thin adapters around these. The database
decides what runs: a message only carries a request id, and every state change is a
conditional update (storage/requests.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from sqlmodel import Session, select

from fairvalue import kinds, pipeline
from fairvalue.reads import iso
from fairvalue.settings import Settings, get_settings
from models import estimator, gates, live, monitor, policy
from models.diagnostics import item_segments, segment_metrics
from models.features import MarketData, build_features, floor_before
from models.metrics import valuation_metrics
from models.times import naive_utc
from storage import requests, runs, snapshots
from storage.artifacts import ArtifactError, get_store
from storage.db import session_scope
from storage.market import load_market_data
from storage.registry import (
    CHAMPION,
    CONTENDER,
    PREVIOUS_CHAMPION,
    alias_since,
    get_alias,
    load_model,
    lock_collection,
    promote,
    register_version,
    remove_alias,
    set_alias,
    verify_artifact,
)
from storage.snapshots import published_snapshot
from storage.tables import (
    Collection,
    LoopState,
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    PromotionDecision,
    Sale,
    TrainingRequest,
    utcnow,
)

# The loops an operator pauses (each one's task then skips): also the names the CLI and the API take.
NOWCAST_LOOP, POLICY_LOOP, TRAINING_LOOP, MONITOR_LOOP = "nowcast", "policy", "training", "monitor"
LOOPS = (NOWCAST_LOOP, POLICY_LOOP, TRAINING_LOOP, MONITOR_LOOP)
# The segmentations of item_segments the segments gate compares: the type and the price band of
# the fair value. The attributes (gender, skin tone) are reported by /performance, not gated on.
GATE_SEGMENTATIONS = ("type", "price_band")

log = logging.getLogger(__name__)


# --- pausing loops ---------------------------------------------------------------------

def set_paused(loop: str, paused: bool, reason: str = "", by: str = "") -> None:
    """Pause or resume a loop (every collection's); `by` names who did (the CLI's user@host)."""
    if loop not in LOOPS:
        raise ValueError(f"unknown loop {loop!r}; loops: {', '.join(LOOPS)}")
    from storage.upsert import upsert

    with session_scope() as session:
        upsert(session, LoopState.__table__, [{"loop": loop, "paused": paused, "reason": reason,
                                               "updated_at": utcnow(), "changed_by": by[:100]}], keys=("loop",))


def is_paused(loop: str) -> bool:
    with session_scope() as session:
        state = session.get(LoopState, loop)
        return bool(state and state.paused)


# --- live error -------------------------------------------------------------------------

def _snapshots(session: Session, coll: Collection, statuses: tuple[str, ...], model_version_id: int | None = None,
               since=None) -> pd.DataFrame:
    query = select(NowcastSnapshot.id, NowcastSnapshot.published_at, NowcastSnapshot.model_version_id).where(
        NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status.in_(statuses),
        NowcastSnapshot.published_at.is_not(None))
    if model_version_id is not None:
        query = query.where(NowcastSnapshot.model_version_id == model_version_id)
    if since is not None:
        query = query.where(NowcastSnapshot.published_at >= since - timedelta(days=1))
    rows = session.exec(query.order_by(NowcastSnapshot.published_at)).all()
    frame = pd.DataFrame(rows, columns=["snapshot_id", "published_at", "model_version_id"])
    frame["published_at"] = naive_utc(frame["published_at"])
    return frame


def live_scored(session: Session, coll: Collection, since, statuses=(snapshots.PUBLISHED,),
                model_version_id: int | None = None) -> pd.DataFrame:
    """Sales since `since` (not suspected wash trades), each scored against the latest snapshot
    published before it (for a daily-priced collection: the card-days its snapshots valued,
    see fairvalue/kinds.py)."""
    if kinds.is_daily(coll):
        return kinds.DAILY.live_scored(session, coll, since, statuses, model_version_id)
    sales = pd.DataFrame(
        session.exec(select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price)
                     .where(Sale.collection_id == coll.id, Sale.ts >= since, Sale.wash_reason.is_(None))).all(),
        columns=["event_id", "ts", "item_key", "price"])
    sales["ts"] = naive_utc(sales["ts"])
    snaps = _snapshots(session, coll, statuses, model_version_id, since)
    if sales.empty or snaps.empty:
        return pd.DataFrame(columns=["event_id", "ts", "item_key", "price", "fair_value", "p10", "p90"])
    needed = snaps["snapshot_id"].tolist()
    rows = pd.DataFrame(
        session.exec(select(NowcastRow.snapshot_id, NowcastRow.item_key, NowcastRow.fair_value, NowcastRow.p10,
                            NowcastRow.p90).where(NowcastRow.snapshot_id.in_(needed),
                                                  NowcastRow.item_key.in_(sales["item_key"].unique().tolist()))).all(),
        columns=["snapshot_id", "item_key", "fair_value", "p10", "p90"])
    scored, _ = live.score_sales(sales, snaps, rows)
    return scored


def _metrics(scored: pd.DataFrame) -> dict[str, Any]:
    if scored.empty:
        return {"n": 0}
    return valuation_metrics(scored["fair_value"].to_numpy(), scored["price"].to_numpy(),
                             scored["p10"].to_numpy(), scored["p90"].to_numpy())


# --- retrain policy ---------------------------------------------------------------------

@dataclass
class PolicyOutcome:
    retrain: bool
    reasons: list[str]
    numbers: dict[str, Any]
    request_id: int | None
    new_request: bool
    request_state: str | None = None  # of a request recorded before (an operator's retried Idempotency-Key)
    notes: list[str] = field(default_factory=list)  # why numbers were not counted (policy.PolicyDecision)


def run_policy(settings: Settings | None = None, now=None) -> PolicyOutcome:
    """Decide whether to retrain; if so, record one request (idempotent per day and reason).
    The caller publishes the request id after this commits."""
    settings = settings or get_settings()
    now = now or utcnow()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        champion = get_alias(session, coll, CHAMPION)
        live_metrics = _metrics(live_scored(session, coll, now - timedelta(days=settings.policy_live_window_days)))
        new_data = _new_since_training(session, coll, champion)
    drift_summary = None
    if champion is not None and kinds.is_daily(coll):
        drift_summary = {"error": "drift is not measured for daily-priced collections yet"}
    elif champion is not None:
        try:
            report, _ = pipeline.drift(settings)
            drift_summary = report.summary
        except (LookupError, ValueError) as exc:
            drift_summary = {"error": str(exc)}
    age = (now - champion.created_at).total_seconds() / 86400 if champion else None
    config = policy.PolicyConfig(
        max_live_mape=settings.policy_max_live_mape, max_share_drifted=settings.policy_max_share_drifted,
        max_prediction_psi=settings.policy_max_prediction_psi, max_champion_age_days=settings.retrain_max_age_days,
    )
    decision = policy.decide_retrain(live_metrics, drift_summary, age, config, new_data)
    if not decision.retrain:
        return PolicyOutcome(False, decision.reasons, decision.numbers, None, False, notes=decision.notes)
    key = policy.idempotency_key(settings.collection, now.date(), decision.reasons)
    outcome = _record_request(settings, key, "; ".join(decision.reasons), decision.numbers, {})
    outcome.notes = decision.notes
    return outcome


def _new_since_training(session: Session, coll: Collection, champion: ModelVersion | None) -> policy.NewData | None:
    """What arrived after the champion's training data ended, or was stored after it was made (a
    backfill): clean sales, or prices, for the age trigger; None without a champion or for one
    registered without its data_end."""
    if champion is None or champion.data_end is None:
        return None
    kind = kinds.kind_of(coll)
    return policy.NewData(kind.count_after(session, coll, champion.data_end, champion.created_at), kind.observations,
                          iso(champion.data_end))


def _record_request(settings: Settings, key: str, reason: str, trigger: dict, params: dict,
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
            _train_params(settings, overrides)
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


# What an operator gives as the reason of a retrain, promote or rollback: a sentence kept with the
# request or decision and shown in listings, not a document. The API and the CLI both refuse a
# longer one (a cut would change what the operator said without telling them).
MAX_REASON_LENGTH = 500


class BadReason(ValueError):
    """An operator's reason that cannot be recorded as given; the message says why."""


def operator_reason(reason: str) -> str:
    """The reason as recorded (stripped), or BadReason: empty, over MAX_REASON_LENGTH characters,
    or holding a NUL (no text column stores one)."""
    reason = reason.strip()
    if not reason:
        raise BadReason("reason (a non-empty string) is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadReason(f"reason is {len(reason):,} characters; give at most {MAX_REASON_LENGTH} characters")
    if "\x00" in reason:
        raise BadReason("reason must not contain a NUL character")
    return reason


class IdempotencyKeyReused(ValueError):
    """An operator's idempotency key already names a request for another reason or parameters."""


def enqueue_retrain(reason: str, params: dict | None = None, settings: Settings | None = None,
                    operator: str | None = None, idempotency_key: str | None = None) -> PolicyOutcome:
    """An operator's retrain: a new request, unless `idempotency_key` (a client's own, the API's
    Idempotency-Key header) already named one: a retry after a timeout then gets that request
    back (new_request False) instead of a second training; IdempotencyKeyReused when that request
    asked for something else. BadTrainingParams when `params` could not train this collection.
    `operator` names who asked (an API token's name, or "cli:<login>"). BadReason for a reason
    operator_reason refuses."""
    reason = operator_reason(reason)
    settings = settings or get_settings()
    # The client's key hashed: a 64-character slug and a 128-character key would not fit the column.
    key = f"{settings.collection}:operator:" + (f"key:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
                                                 if idempotency_key else utcnow().isoformat())
    outcome = _record_request(settings, key, f"operator: {reason}", {"operator": operator or True}, params or {},
                              check_params=True)
    if idempotency_key and not outcome.new_request:
        with session_scope() as session:
            earlier = session.get(TrainingRequest, outcome.request_id)
            if (earlier.reason, earlier.params) != (f"operator: {reason}", params or {}):
                raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} already names request "
                                           f"{earlier.id} ({earlier.reason}, params {earlier.params})")
            outcome = replace(outcome, request_state=earlier.state)
    return outcome


# --- training a request -----------------------------------------------------------------

class LeaseLost(RuntimeError):
    pass


# No attempt can train a collection without sales (or prices), or with too few, until more are
# ingested: its request fails at once instead of retrying.
NothingToTrain = pipeline.NothingToTrain
TRAINING_REFUSALS = pipeline.TRAINING_REFUSALS


class TrainingTimedOut(RuntimeError):
    """The training ran past FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS: Celery's soft time limit (prefork
    pool), or the training's own check between its stages (any pool; the solo pool has no time limit)."""

    def __init__(self, limit_seconds: float):
        super().__init__(f"time limit: the training ran past {limit_seconds:.0f} s "
                         "(FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS)")


def _no_checkpoint() -> None:
    """train_and_gate outside a claimed request (tests, benches): no time limit to check."""


class _Heartbeat:
    """Renews the lease while training runs; a dead worker stops renewing, and the lease expires.
    So does a training that runs past `renew_for`: a hung one would otherwise keep its lease, and
    the only training slot, as long as its process lives."""

    def __init__(self, request_id: int, worker: str, lease: timedelta, renew_for: timedelta | None = None):
        self.request_id, self.worker, self.lease, self.renew_for = request_id, worker, lease, renew_for
        self._renew_until = None if renew_for is None else time.monotonic() + renew_for.total_seconds()
        self._stop = threading.Event()
        self.lost = False
        self.gave_up = False  # ran past renew_for: the lease is left to run out
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def check_time(self) -> None:
        """Between a training's stages: TrainingTimedOut once it has run past `renew_for`, the moment
        its lease stops being renewed. The solo pool (`fairvalue up`) enforces no Celery time limit, so
        this is what ends a long training there, as an attempt like any other, while it still holds
        its lease; without it the training ran on, lost its lease, had its result refused at
        registration and was trained again from the sweep, up to its last attempt."""
        if self._renew_until is not None and time.monotonic() > self._renew_until:
            raise TrainingTimedOut(self.renew_for.total_seconds())

    def _run(self):
        interval = max(self.lease.total_seconds() / 3, 0.5)
        while not self._stop.wait(interval):
            if self._renew_until is not None and time.monotonic() > self._renew_until:
                self.gave_up = True
                log.warning("training request %s ran past its time limit: its lease is no longer renewed",
                            self.request_id)
                return
            try:
                with session_scope() as session:
                    renewed = requests.heartbeat(session, self.request_id, self.worker, self.lease)
            except Exception:  # a database blip: keep trying while the lease runs; only a refusal loses it
                log.warning("lease renewal of training request %s failed; retrying", self.request_id, exc_info=True)
                continue
            if not renewed:
                self.lost = True
                return


def train_request(request_id: int, worker: str, settings: Settings | None = None) -> dict[str, Any]:
    """Claim, train, evaluate against the champion on the same forward window, gate, register
    and apply the decision. A request already claimed, done or failed is left alone."""
    settings = settings or get_settings()
    lease = timedelta(seconds=settings.training_lease_seconds)
    if is_paused(TRAINING_LOOP):
        # The message is spent but the request still waits: mark it unpublished, so resuming
        # the loop (or the sweep) publishes it again. A resume that came in between and did not
        # see it unpublished is caught by looking again.
        with session_scope() as session:
            requests.mark_unpublished(session, request_id)
        if is_paused(TRAINING_LOOP):
            return {"status": runs.SKIPPED, "reason": "paused", "skipped": "the training loop is paused"}
    with session_scope() as session:
        if not requests.claim(session, request_id, worker, lease, settings.training_max_attempts):
            outcome = _not_claimable(session.get(TrainingRequest, request_id), settings.training_max_attempts)
            return _one_resend(session, request_id, outcome)
        request = session.get(TrainingRequest, request_id)
        params = dict(request.params or {})
        # The request row, not the message or the worker's default, says which collection.
        slug = session.get(Collection, request.collection_id).slug
    settings = settings.for_collection(slug)
    try:
        with _Heartbeat(request_id, worker, lease, timedelta(seconds=settings.training_time_limit_seconds)) as heart:
            with session_scope() as session:
                if not requests.fenced_update(session, request_id, worker, state=requests.TRAINING):
                    raise LeaseLost("lease lost before training started")
            outcome = train_and_gate(settings, params, checkpoint=heart.check_time)
            if heart.lost:
                raise LeaseLost("lease lost during training")
            heart.check_time()  # a last stage that ran past the limit is not registered either
            return _register_and_decide(settings, request_id, worker, outcome)
    except LeaseLost as exc:
        return {"skipped": str(exc)}
    except Exception as exc:
        failure = exc
        if isinstance(exc, SoftTimeLimitExceeded):  # an attempt like any other: retried or failed
            failure = TrainingTimedOut(settings.training_time_limit_seconds)
        with session_scope() as session:
            state = requests.release_for_retry(
                session, request_id, worker, f"{type(failure).__name__}: {failure}", settings.training_max_attempts,
                timedelta(seconds=settings.training_retry_backoff_seconds),
                final=isinstance(failure, TRAINING_REFUSALS))
        failure.add_note(f"training request {request_id} is now {state}")
        if failure is exc:
            raise
        raise failure from exc


# How long after a holder's lease runs out a message it turned away comes back: the lease is
# renewed every third of its length, so a live holder has renewed it long before then.
RESEND_MARGIN_SECONDS = 5.0


def _not_claimable(request: TrainingRequest | None, max_attempts: int) -> dict[str, Any]:
    """Why a message cannot claim its request, and when to look again. Held under a live lease by
    another claim: that holder may have died (a pool child killed, its message redelivered at
    once), so the message comes back once the lease has run out (`send_again_in`, seconds) and
    claims the request then, or finds it decided and stops. Nothing to come back for once the
    request is done or failed, or its holder took the last attempt (the sweep fails it if it died)."""
    if request is None:
        return {"skipped": "not claimable (missing)"}
    why = f"not claimable (state {request.state})"
    held = requests.live_lease(request)
    if held is None:
        return {"skipped": why}
    holder, left = held
    why = f"{why}: held by {holder} under a lease for {left.total_seconds():.0f} s more"
    if request.attempts >= max_attempts:
        return {"status": runs.SKIPPED, "skipped": f"{why}, on its last attempt"}
    return {"status": runs.SKIPPED, "skipped": why,
            "send_again_in": round(left.total_seconds() + RESEND_MARGIN_SECONDS, 1)}


def _one_resend(session: Session, request_id: int, outcome: dict[str, Any]) -> dict[str, Any]:
    """At most one deferred re-send per request: the first message turned away keeps its
    `send_again_in`; a duplicate meeting it pending is acked (a skipped run saying why) instead of
    each coming back once a lease until the request is decided."""
    if "send_again_in" not in outcome:
        return outcome
    until = utcnow() + timedelta(seconds=outcome["send_again_in"])
    pending = requests.schedule_resend(session, request_id, until, timedelta(seconds=RESEND_MARGIN_SECONDS))
    if pending is None:
        return outcome
    return {"status": runs.SKIPPED, "skipped": f"{outcome['skipped']}; a duplicate: the request's one re-send is "
            f"already scheduled for {iso(pending)}, so this message is not sent again"}


@dataclass
class TrainOutcome:
    model: estimator.FairValueModel
    data: MarketData
    decision: gates.GateDecision
    numbers: dict[str, Any]
    champion_id: int | None


def _train_params(settings: Settings, overrides: dict) -> estimator.TrainParams:
    base = {"max_iter": settings.train_max_iter, "random_state": settings.random_seed}
    allowed = set(estimator.TrainParams.__dataclass_fields__)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown training params {sorted(unknown)}; known: {sorted(allowed)}")
    return estimator.TrainParams(**{**base, **overrides})


def train_and_gate(settings: Settings, overrides: dict,
                   checkpoint: Callable[[], None] = _no_checkpoint) -> TrainOutcome:
    """Score the contender's recipe and the champion on the same forward window (the last
    `gate_window_days` of sales, unseen by both), apply the gates, then fit the contender on
    everything. When the champion was trained before the window it is scored as it is;
    otherwise its recipe is refitted on the data before the window, like the contender's.
    `checkpoint` is called between the stages (it raises TrainingTimedOut past the time limit)."""
    store = get_store(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        if kinds.is_daily(coll):
            return _train_and_gate_daily(settings, overrides, checkpoint)
    params = _train_params(settings, overrides)
    with session_scope() as session:
        data = load_market_data(session, coll)
        champion = get_alias(session, coll, CHAMPION)
    if data.sales.empty:
        raise NothingToTrain(f"collection {coll.slug!r} holds no clean sale to train on: ingest sales first "
                             "(fairvalue ingest sales FILE, or the sales webhook)")
    data.context()  # computed once; the market before the window reuses a slice of it
    checkpoint()
    end = data.sales["ts"].max()
    start = end - pd.Timedelta(days=settings.gate_window_days)
    past = data.before(start)
    window = data.sales[data.sales["ts"] >= start].reset_index(drop=True)
    queries = pd.DataFrame({"item_key": window["item_key"], "ts": window["ts"].dt.normalize().clip(lower=start)})

    contender_eval = estimator.fit(past, params)
    evaluations = {"contender": _evaluation("contender", contender_eval, data, queries, window)}
    checkpoint()
    champion_mode = None
    if champion is not None:
        evaluations["champion"], champion_mode = _champion_evaluation(store, champion, past, data, queries, window,
                                                                      start)
        checkpoint()
    floor = floor_before(data.market, queries["ts"])
    floor_metrics = valuation_metrics(floor, window["price"].to_numpy())
    decision = gates.decide(evaluations["contender"], evaluations.get("champion"), floor_metrics,
                            kinds.UNIQUE.gate_config(settings))
    model = estimator.fit(data, params)
    numbers = {
        "window": {"from": iso(start.to_pydatetime()), "to": iso(end.to_pydatetime()), "n_sales": len(window)},
        "contender": evaluations["contender"].metrics,
        "champion": evaluations["champion"].metrics if "champion" in evaluations else None,
        "champion_scored_as": champion_mode,
        "previous_day_floor": floor_metrics,
        "params": params.as_dict(),
        # No estimator here can use a GPU yet: say where training really ran.
        "device": {"requested": settings.device, "used": "cpu"},
    }
    return TrainOutcome(model, data, decision, numbers, champion.id if champion else None)


def _train_and_gate_daily(settings: Settings, overrides: dict,
                          checkpoint: Callable[[], None] = _no_checkpoint) -> TrainOutcome:
    """train_and_gate for a daily-priced collection: contender and champion recipes fitted on
    the days before the gate window (or the champion's artifact when it was trained before it),
    both scored on every card-day of the window, the gates applied, then the contender fitted on
    everything. The previous price is recorded as the baseline (not a hard gate, see kinds.py)."""
    params = kinds.DAILY.params(overrides)
    store = get_store(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        data = kinds.DAILY.load(session, coll)
        champion = get_alias(session, coll, CHAMPION)
    if data.prices.empty:
        raise NothingToTrain(f"no prices to train on in {coll.slug}: load prices first")
    end = data.last_day
    # The last gate_window_days priced days, by the fit's own rule: after a gap in the prices the
    # last calendar days held only the day after it, no card had a fair value on it, and the gates
    # rejected every request with "eval_n 0". Without a gap these are the last calendar days.
    start = kinds.daily.last_priced_days_start(data, settings.gate_window_days)
    past = data.before(start)
    try:
        contender_model = kinds.daily.fit(past, params)
    except kinds.daily.TooFewPrices as exc:  # say which prices: those before the window, not all of them
        raise kinds.daily.TooFewPrices(f"before the gate window from {start:%Y-%m-%d}: {exc}") from None
    contender, rows = kinds.DAILY.evaluation("contender", contender_model, data, start)
    evaluations = {"contender": contender}
    checkpoint()
    champion_mode = None
    if champion is not None:
        champion_end = pd.Timestamp(champion.data_end).tz_convert("UTC").tz_localize(None)
        if champion_end < start:
            champion_model, champion_mode = load_model(store, champion), "artifact"
        else:
            recipe = {k: v for k, v in champion.params.items() if k in kinds.daily.DailyParams.__dataclass_fields__}
            champion_model, champion_mode = kinds.daily.fit(past, kinds.DAILY.params(recipe)), "recipe refit"
        evaluations["champion"] = kinds.DAILY.evaluation("champion", champion_model, data, start)[0]
        checkpoint()
    baseline = kinds.DAILY.baseline(data, rows)
    decision = gates.decide(contender, evaluations.get("champion"), baseline, kinds.DAILY.gate_config(settings))
    model = kinds.daily.fit(data, params)
    numbers = {
        "window": {"from": iso(start.to_pydatetime()), "to": iso(end.to_pydatetime()), "n_card_days": len(rows)},
        "contender": contender.metrics,
        "champion": evaluations["champion"].metrics if "champion" in evaluations else None,
        "champion_scored_as": champion_mode,
        "previous_price": baseline,
        "params": params.as_dict(),
        "chosen": {"window": model.window, "alpha": model.alpha},
        "device": {"requested": settings.device, "used": "cpu"},
    }
    return TrainOutcome(model, data, decision, numbers, champion.id if champion else None)


# The champion's side of the gates depends only on the champion, the data and the window (a
# recipe refit is seeded), so a worker that trains several requests against one champion scores
# it once: a small contender's train_and_gate took 24 s with the refit, 14 s without (pyinstrument).
_champion_evaluations: dict[tuple, tuple[gates.Evaluation, str]] = {}
_champion_evaluations_lock = threading.Lock()


def _champion_evaluation(store, champion: ModelVersion, past: MarketData, data: MarketData, queries: pd.DataFrame,
                         window: pd.DataFrame, start: pd.Timestamp) -> tuple[gates.Evaluation, str]:
    key = (champion.id, len(data.sales), data.sales["ts"].max(), len(data.market), start)
    with _champion_evaluations_lock:
        if key in _champion_evaluations:
            return _champion_evaluations[key]
    champion_end = pd.Timestamp(champion.data_end).tz_convert("UTC").tz_localize(None)
    if champion_end < start:
        champion_model, mode = load_model(store, champion), "artifact"
    else:
        recipe = {k: v for k, v in champion.params.items() if k in estimator.TrainParams.__dataclass_fields__}
        champion_model, mode = estimator.fit(past, estimator.TrainParams(**recipe)), "recipe refit"
    result = (_evaluation("champion", champion_model, data, queries, window), mode)
    with _champion_evaluations_lock:
        _champion_evaluations.clear()  # one champion and data version at a time
        _champion_evaluations[key] = result
    return result


def _evaluation(name: str, model: estimator.FairValueModel, data: MarketData, queries: pd.DataFrame,
                window: pd.DataFrame) -> gates.Evaluation:
    feats = build_features(data, model.vocab, queries)
    pred = model.predict_features(feats)
    # Monotone in the floor: the same item in a market 10 % higher must not be worth less.
    lifted = feats.copy()
    lifted["floor"] = lifted["floor"] * 1.1
    monotone = bool(np.all(model.predict_features(lifted)["fair_value"].to_numpy()
                           >= pred["fair_value"].to_numpy() * (1 - 1e-9)))
    fair, price = pred["fair_value"].to_numpy(), window["price"].to_numpy()
    segments = item_segments(data.items, window["item_key"], fair)[list(GATE_SEGMENTATIONS)]
    return gates.Evaluation(
        name=name,
        metrics=valuation_metrics(fair, price, pred["p10"].to_numpy(), pred["p90"].to_numpy()),
        segments=segment_metrics(fair, price, segments, pred["p10"].to_numpy(), pred["p90"].to_numpy()),
        sanity=gates.sanity(fair, pred["p10"].to_numpy(), pred["p90"].to_numpy(), monotone),
    )


def _register_and_decide(settings: Settings, request_id: int, worker: str, outcome: TrainOutcome) -> dict:
    """One transaction: the request moves to decided (only while we hold the lease), the
    version is registered and the decision applied. Lost the lease → nothing is written."""
    store = get_store(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        if not requests.fenced_update(session, request_id, worker, state=requests.DECIDED, lease_expires_at=None):
            raise LeaseLost("lease lost before registering")
        data = outcome.data
        if kinds.is_daily(coll):
            data_start, data_end, n_train = kinds.DAILY.span(data)
        else:
            data_start = data.sales["ts"].min().tz_localize("UTC").to_pydatetime()
            data_end, n_train = data.sales["ts"].max().tz_localize("UTC").to_pydatetime(), len(data.sales)
        version = register_version(
            session, store, coll, outcome.model, {"gate_evaluation": outcome.numbers},
            data_start=data_start, data_end=data_end, n_train=n_train, code_version=pipeline.code_version(),
        )
        request = session.get(TrainingRequest, request_id)
        request.model_version_id = version.id
        session.add(request)
        verdict, reason = outcome.decision.decision, outcome.decision.reason
        # The gates compared the contender with the champion of when training started. Another
        # training, a rollback or an operator may have changed it since: then the contender was
        # never compared with the model it would replace, so it is shadowed instead, and the
        # monitor judges it against the current champion on live sales.
        lock_collection(session, coll)
        champion_now = get_alias(session, coll, CHAMPION)
        if verdict == gates.PROMOTE and (champion_now.id if champion_now else None) != outcome.champion_id:
            verdict = gates.SHADOW
            reason = (f"{reason}; but the champion changed to v{champion_now.version} while training, "
                      "so it is shadowed to be judged against it live")
        _record_decision(session, coll, verdict, gates.BY_GATES, reason,
                         {**outcome.numbers, "checks": outcome.decision.as_dict()["checks"]},
                         contender=version.id, champion=outcome.champion_id, request_id=request_id)
        if verdict == gates.PROMOTE:
            promote(session, coll, version, settings.probation_days)
        elif verdict == gates.SHADOW:
            waiting = get_alias(session, coll, CONTENDER)
            if waiting is not None and waiting.id != version.id:  # one shadow at a time; say what became of it
                _record_decision(session, coll, gates.REJECT, gates.BY_GATES,
                                 f"superseded in shadow by v{version.version} before it was judged live", {},
                                 contender=waiting.id, champion=champion_now.id if champion_now else None)
            set_alias(session, coll, CONTENDER, version)
    return {"request_id": request_id, "collection": coll.slug, "model_version": version.version,
            "decision": verdict, "reason": reason}


def _record_decision(session: Session, coll: Collection, decision: str, decided_by: str, reason: str,
                     numbers: dict, contender: int | None, champion: int | None, request_id: int | None = None):
    from storage.runs import _jsonable

    session.add(PromotionDecision(
        collection_id=coll.id, training_request_id=request_id, contender_version_id=contender,
        champion_version_id=champion, decision=decision, decided_by=decided_by, reason=reason,
        numbers=_jsonable(numbers)))


# --- sweep ------------------------------------------------------------------------------

def requests_to_republish(settings: Settings | None = None) -> list[int]:
    """The sweep's list; first fails the requests that used up their attempts by dying."""
    settings = settings or get_settings()
    with session_scope() as session:
        failed = requests.fail_abandoned(session, settings.training_max_attempts)
        if failed:
            log.warning("training requests %s failed: lease expired on their last attempt", failed)
        return requests.to_republish(session, timedelta(minutes=settings.sweep_stale_minutes))


# A run still `running` this long after the longest a task may run (the training's hard time
# limit) is its dead process's: the margin covers a slow start and recording its end.
ABANDON_MARGIN = timedelta(hours=1)


def abandon_stale_runs(settings: Settings | None = None) -> list[int]:
    """Mark abandoned the task runs whose process died under them (a killed worker never records
    the end of its run, and retention keeps every run still running): the ids marked."""
    settings = settings or get_settings()
    longest = timedelta(seconds=settings.hard_time_limit(settings.training_time_limit_seconds))
    reason = (f"still running {(longest + ABANDON_MARGIN).total_seconds() / 3600:.1f} h after it started, past the "
              "longest any task may run (the training's hard time limit and an hour): its worker process died")
    with session_scope() as session:
        abandoned = runs.abandon_stale(session, utcnow() - longest - ABANDON_MARGIN, reason)
    if abandoned:
        log.warning("task runs %s abandoned: their worker died under them", abandoned)
    return abandoned


def mark_published(request_id: int) -> None:
    with session_scope() as session:
        requests.mark_published(session, request_id)


# --- monitor ----------------------------------------------------------------------------

def run_monitor(settings: Settings | None = None, now=None) -> dict[str, Any]:
    """Roll back a recent promotion whose live error is worse than the previous champion's
    shadow on the same sales; settle a shadowed contender after its shadow period."""
    settings = settings or get_settings()
    now = now or utcnow()
    out: dict[str, Any] = {}
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        champion = get_alias(session, coll, CHAMPION)
        previous = get_alias(session, coll, PREVIOUS_CHAMPION)
        since = alias_since(session, coll, PREVIOUS_CHAMPION)
        if champion and previous and since and now - since <= timedelta(days=settings.probation_days):
            new = live_scored(session, coll, since, (snapshots.PUBLISHED,), champion.id)
            old = live_scored(session, coll, since, (snapshots.SHADOW,), previous.id)
            new, old = live.paired(new, old)
            config = monitor.MonitorConfig(probation_days=settings.probation_days, min_n=settings.monitor_min_sales,
                                           rollback_margin=settings.rollback_margin)
            decision = monitor.decide_rollback(_metrics(new), _metrics(old), config)
            out["probation"] = {"champion": champion.version, "previous": previous.version,
                                "rollback": decision.rollback, "reason": decision.reason,
                                "numbers": decision.numbers}
            # As for an operator's rollback, the model it restores must still be readable. One that
            # is not can never be rolled back to: its alias goes (the probation with it), so the
            # refusal is not recorded again every hour, and the champion stays.
            refusal = decision.rollback and _artifact_refusal(session, get_store(settings), coll, previous,
                                                              champion, gates.BY_MONITOR)
            if refusal:
                remove_alias(session, coll, PREVIOUS_CHAMPION)
                out["rollback_refused"] = refusal
            elif decision.rollback:
                _rollback(session, coll, champion, previous, gates.BY_MONITOR, decision.reason, decision.numbers)
                out["rolled_back_to"] = previous.version
        contender = get_alias(session, coll, CONTENDER)
        shadow_since = alias_since(session, coll, CONTENDER)
        # Not in the run that rolled back: the contender's shadow was scored against the champion
        # just removed; the next run judges it against the restored one.
        if contender and champion and shadow_since and "rolled_back_to" not in out \
                and now - shadow_since >= timedelta(days=settings.shadow_days):
            cont = live_scored(session, coll, shadow_since, (snapshots.SHADOW,), contender.id)
            # The champion's own values over the shadow period, published or, for one restored by
            # a rollback, shadowed while it was the previous champion.
            champ = live_scored(session, coll, shadow_since, (snapshots.PUBLISHED, snapshots.SHADOW), champion.id)
            cont, champ = live.paired(cont, champ)
            c_m, h_m = _metrics(cont), _metrics(champ)
            better = c_m.get("n", 0) >= settings.monitor_min_sales and \
                c_m["mape"] <= h_m["mape"] * (1 - settings.gate_mape_margin)
            # Its shadow values may have come from a worker's cache of it: read it back first.
            refusal = better and _artifact_refusal(session, get_store(settings), coll, contender, champion,
                                                   gates.BY_MONITOR)
            if refusal:
                out["shadow"] = {"contender": contender.version, "decision": gates.REJECT, "reason": refusal}
            else:
                verdict = gates.PROMOTE if better else gates.REJECT
                _record_decision(session, coll, verdict, gates.BY_MONITOR,
                                 f"after {settings.shadow_days} days in shadow: "
                                 f"contender live MAPE {c_m.get('mape')} vs champion {h_m.get('mape')} on "
                                 f"{c_m.get('n', 0)} sales", {"contender": c_m, "champion": h_m},
                                 contender=contender.id, champion=champion.id)
                if better:
                    promote(session, coll, contender, settings.probation_days)
                out["shadow"] = {"contender": contender.version, "decision": verdict,
                                 "numbers": {"contender": c_m, "champion": h_m, "min_n": settings.monitor_min_sales,
                                             "mape_margin": settings.gate_mape_margin}}
            remove_alias(session, coll, CONTENDER)
        # A change of champion asks for a nowcast after it commits; a worker or broker lost between
        # the two leaves the old model's values published until the next scheduled nowcast (a day,
        # for cards). The task asks again for whatever this finds.
        published, champion_now = published_snapshot(session, coll), get_alias(session, coll, CHAMPION)
        if published is not None and champion_now is not None and published.model_version_id != champion_now.id:
            out["champion_not_published"] = {"champion": champion_now.version, "snapshot": published.id}
    return out


def _rollback(session, coll, champion: ModelVersion, previous: ModelVersion, by: str, reason: str, numbers: dict):
    set_alias(session, coll, CHAMPION, previous)
    remove_alias(session, coll, PREVIOUS_CHAMPION)
    _record_decision(session, coll, gates.ROLLBACK, by, reason, numbers, contender=champion.id, champion=previous.id)


# --- operators --------------------------------------------------------------------------

class ArtifactRefused(RuntimeError):
    """The version's artifact is missing or fails its sha256: it must not become champion."""


def _artifact_refusal(session: Session, store, coll: Collection, target: ModelVersion,
                      champion: ModelVersion | None, by: str) -> str | None:
    """Read the artifact back before an alias points at it: None when it is sound; else the
    refusal, recorded in the session's transaction, while the champion stays where it is."""
    try:
        verify_artifact(store, target)
    except ArtifactError as exc:
        reason = f"artifact of version {target.version} refused: {exc}"
        _record_decision(session, coll, gates.REJECT, by, reason, {"artifact_uri": target.artifact_uri,
                         "sha256": target.sha256}, contender=target.id, champion=champion.id if champion else None)
        return reason
    return None


def _refuse_unverified(session: Session, store, coll: Collection, target: ModelVersion,
                       champion: ModelVersion | None, by: str) -> None:
    """_artifact_refusal for an operator's change: a refusal is committed, then raised."""
    reason = _artifact_refusal(session, store, coll, target, champion, by)
    if reason is not None:
        session.commit()
        raise ArtifactRefused(reason)


def _who(operator: str | None) -> dict:
    """The decision's record of which operator acted (the API token's name, or "cli:<login>")."""
    return {"operator": operator} if operator else {}


class RejectedByGates(RuntimeError):
    """An operator asked to promote a version the gates rejected, or the monitor rolled back,
    without forcing it: nothing changed. The message names the decision; each adapter says how to
    force (--force, "force": true)."""


def standing_rejection(session: Session, target: ModelVersion) -> PromotionDecision | None:
    """The newest verdict of the gates or the monitor on this version, when it is against it: a
    reject, or the monitor's rollback of it for its live error (a later shadow promotion by the
    monitor lifts that). An operator's forced promotion or rollback does not: the judgment stands
    for the next one too."""
    verdict = session.exec(select(PromotionDecision)
                           .where(PromotionDecision.contender_version_id == target.id,
                                  PromotionDecision.decided_by.in_((gates.BY_GATES, gates.BY_MONITOR)))
                           .order_by(PromotionDecision.created_at.desc(), PromotionDecision.id.desc())).first()
    against = verdict is not None and (
        verdict.decision == gates.REJECT
        or (verdict.decision == gates.ROLLBACK and verdict.decided_by == gates.BY_MONITOR))
    return verdict if against else None


def operator_promote(version: int, reason: str, settings: Settings | None = None, operator: str | None = None,
                     force: bool = False) -> dict:
    """Make `version` the champion. A version the gates rejected or the monitor rolled back is
    refused (RejectedByGates, naming the decision) unless `force`: the forced promotion records the
    decision it overrode."""
    reason = operator_reason(reason)
    settings = settings or get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        target = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                         ModelVersion.version == version)).first()
        if target is None:
            raise LookupError(f"no model version {version} in {coll.slug}")
        champion = get_alias(session, coll, CHAMPION)
        if champion is not None and champion.id == target.id:
            return {"champion": version, "changed": False}
        rejection = standing_rejection(session, target)
        if rejection is not None and not force:
            done = "rolled back" if rejection.decision == gates.ROLLBACK else "rejected"
            raise RejectedByGates(
                f"version {version} was {done} by the {rejection.decided_by} on "
                f"{rejection.created_at:%Y-%m-%d %H:%M} UTC (decision {rejection.id}): {rejection.reason}")
        _refuse_unverified(session, get_store(settings), coll, target, champion, gates.BY_OPERATOR)
        promote(session, coll, target, settings.probation_days)
        overrode = {} if rejection is None else {"forced_over": {
            "decision_id": rejection.id, "decided_by": rejection.decided_by, "reason": rejection.reason,
            "decided_at": rejection.created_at.isoformat()}}
        _record_decision(session, coll, gates.PROMOTE, gates.BY_OPERATOR, reason, {**_who(operator), **overrode},
                         contender=target.id, champion=champion.id if champion else None)
    return {"champion": version, "changed": True, **({"forced_over_decision": rejection.id} if rejection else {})}


def operator_rollback(reason: str, settings: Settings | None = None, operator: str | None = None) -> dict:
    reason = operator_reason(reason)
    settings = settings or get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        champion = get_alias(session, coll, CHAMPION)
        previous = get_alias(session, coll, PREVIOUS_CHAMPION)
        if champion is None or previous is None:
            raise LookupError("nothing to roll back to: there is no previous champion")
        _refuse_unverified(session, get_store(settings), coll, previous, champion, gates.BY_OPERATOR)
        _rollback(session, coll, champion, previous, gates.BY_OPERATOR, reason, _who(operator))
        return {"champion": previous.version, "rolled_back_from": champion.version}


def decisions(settings: Settings | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, with model version numbers (not row ids) for contender and champion: the API's
    read (fairvalue.reads.decisions). NotFound for a collection that does not exist (looked up, not
    created: a mistyped slug leaves nothing behind)."""
    from fairvalue.reads import decisions as read_decisions

    return read_decisions((settings or get_settings()).collection, limit=limit)["decisions"]
