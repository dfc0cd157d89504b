"""Training a request (the training queue): claim it under a lease, renew the lease while
gating.train_and_gate runs, then register the version and apply the gates' decision in one
fenced transaction. A failed attempt goes back to queued with a backoff, or fails for good."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlmodel import Session

from fairvalue import kinds, pipeline
from fairvalue.answers import iso
from fairvalue.lifecycle.gating import TRAINING_REFUSALS, TrainOutcome, train_and_gate
from fairvalue.lifecycle.loops import TRAINING_LOOP, is_paused
from fairvalue.settings import Settings, get_settings
from models import estimator, gates
from storage import requests, runs
from storage.artifacts import get_store
from storage.db import session_scope
from storage.decisions import record_decision
from storage.registry import CHAMPION, CONTENDER, get_alias, lock_collection, promote, register_version, set_alias
from storage.tables import Collection, TrainingRequest, utcnow

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    pass


class TrainingTimedOut(RuntimeError):
    """The training ran past FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS: Celery's soft time limit (prefork
    pool), or the training's own check between its stages (any pool; the solo pool has no time limit)."""

    def __init__(self, limit_seconds: float):
        super().__init__(f"time limit: the training ran past {limit_seconds:.0f} s "
                         "(FAIRVALUE_TRAINING_TIME_LIMIT_SECONDS)")


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
            with estimator.training_threads(settings.train_threads):
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
        failure.training_request_state = state  # the train task publishes a retry only for one queued again
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


def forget_resend(request_id: int) -> None:
    """The re-send _one_resend scheduled was not sent (the broker refused it): forget it, so the next
    duplicate, rather than the sweep, sends the request again."""
    with session_scope() as session:
        requests.clear_resend(session, request_id)


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
            session, store, coll, outcome.model, {"gate_evaluation": outcome.numbers, **(outcome.learning_curve or {})},
            data_start=data_start, data_end=data_end, n_train=n_train, code_version=pipeline.code_version(),
            parent_id=outcome.champion_id,  # the champion it was gated against, even if replaced since
        )
        pipeline.store_diagnostics(session, store, coll, version, outcome.diagnostics)
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
        record_decision(session, coll, verdict, gates.BY_GATES, reason,
                         {**outcome.numbers, "checks": outcome.decision.as_dict()["checks"]},
                         contender=version.id, champion=outcome.champion_id, request_id=request_id)
        if verdict == gates.PROMOTE:
            promote(session, coll, version, settings.probation_days)
        elif verdict == gates.SHADOW:
            waiting = get_alias(session, coll, CONTENDER)
            if waiting is not None and waiting.id != version.id:  # one shadow at a time; say what became of it
                record_decision(session, coll, gates.REJECT, gates.BY_GATES,
                                 f"superseded in shadow by v{version.version} before it was judged live", {},
                                 contender=waiting.id, champion=champion_now.id if champion_now else None)
            set_alias(session, coll, CONTENDER, version)
    return {"request_id": request_id, "collection": coll.slug, "model_version": version.version,
            "decision": verdict, "reason": reason}
