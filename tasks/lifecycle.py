"""Lifecycle tasks: retrain policy (daily), training (training queue), sweep and monitor (hourly).

Each parses ids, calls fairvalue.lifecycle and records the run. Messages carry only request
ids: the database decides whether there is anything to do.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from celery.signals import worker_init, worker_ready

from fairvalue import lifecycle, pipeline
from fairvalue.settings import Settings, get_settings
from models import gates
from storage import requests as training_requests
from storage.runs import SKIPPED, recorded_run
from tasks import names, queues
from tasks.app import app, request_nowcast, send_after_commit
from tasks.guards import skipped_unless_loaded

# Why a waiting request is not published: its message would only be skipped (and the sweep would
# republish it, one skipped run an hour). `fairvalue resume training` publishes it.
TRAINING_PAUSED = "the training loop is paused: the request waits unpublished until `fairvalue resume training`"
# What becomes of a follow-up the broker did not take (a run's `not_sent` says why, then this).
SWEEP_PUBLISHES = "the training sweep (hourly) publishes it"
SWEEP_PUBLISHES_ONCE_LAPSED = "if its holder died, the training sweep (hourly) publishes it once the lease has run out"
NEXT_SWEEP_PUBLISHES = "wait for the next sweep (hourly)"
MONITOR_ASKS_AGAIN = "the monitor (hourly) finds the champion's values unpublished and asks again"


log = logging.getLogger(__name__)


@worker_init.connect
def _note_the_loaded_code(**_):
    """The commit the model versions this worker trains record: the one it started from."""
    pipeline.code_version()


@worker_ready.connect
def sweep_once_a_lease_has_run_out(sender, **_) -> None:
    """A training worker that starts may be the restart of one killed whole, whose request is left
    `training` under a lease no one renews, and whose message comes back only after the broker's
    visibility timeout (hours): the hourly sweep was all that recovered it. So a starting training
    worker asks for one sweep of its own, on its own queue, for once a lease has run out: a
    restarted worker trains the dead one's request about a lease after it comes back. A sweep
    finding nothing to do does nothing."""
    settings = get_settings()
    if not settings.training_start_sweep or queues.TRAINING not in sender.app.amqp.queues.consume_from:
        return
    countdown = settings.training_lease_seconds + lifecycle.RESEND_MARGIN_SECONDS
    why = send_after_commit(sender.app.send_task, names.SWEEP, queue=queues.TRAINING, countdown=countdown)
    if why is not None:
        log.warning("the starting training worker's sweep was not sent (%s); beat's hourly one runs", why)


def publish_training(request_id: int, countdown: float | None = None, collection: str | None = None) -> None:
    """Note that a request is published, then publish its id to the training queue (the request
    row was committed before: a crash in between leaves it for the sweep). Noted first: a worker
    that takes the message while training is paused marks the request unpublished (so a resume
    publishes it again), and noted after the send, that mark could land after the worker's and
    leave a request with no message looking published. The collection travels along for the
    logs; the request row decides."""
    kwargs = {"collection": collection} if collection else None
    lifecycle.mark_published(request_id)
    try:
        app.send_task(names.TRAIN, args=[request_id], kwargs=kwargs, queue=queues.TRAINING, countdown=countdown)
    except Exception:
        lifecycle.mark_unpublished(request_id)  # not sent: the sweep or a resume publishes it
        raise


@dataclass(frozen=True)
class TrainingRequested:
    """What became of an operator's retrain: the API and the CLI each render it."""

    request_id: int
    state: str  # queued, or where a replayed request (same Idempotency-Key) is now
    new: bool  # False: the replay of an earlier request
    waits: bool  # still queued: only then is it published (one training or done needs no second message)
    paused: bool  # the training loop is paused: nothing is sent, resuming it publishes the request
    not_sent: str | None = None  # why the broker did not take it (the hourly sweep publishes it)

    @property
    def published(self) -> bool:
        return self.waits and not self.paused and self.not_sent is None


def request_training(reason: str, params: dict | None, settings: Settings, operator: str | None = None,
                     idempotency_key: str | None = None) -> TrainingRequested:
    """Record an operator's training request (lifecycle.enqueue_retrain, and its refusals), then
    publish it unless the training loop is paused or, for a replay, it no longer waits. A broker
    outage does not undo the committed request: not_sent says why, and the sweep publishes it."""
    outcome = lifecycle.enqueue_retrain(reason, params, settings, operator, idempotency_key)
    state = outcome.request_state or training_requests.QUEUED
    waits = outcome.new_request or state == training_requests.QUEUED
    # Checked after the request committed, as the policy's: a resume after this check finds it unpublished.
    paused = lifecycle.is_paused(lifecycle.TRAINING_LOOP)
    not_sent = None
    if waits and not paused:
        not_sent = send_after_commit(publish_training, outcome.request_id, collection=settings.collection)
    return TrainingRequested(outcome.request_id, state, outcome.new_request, waits, paused, not_sent)


@app.task(name=names.POLICY, bind=True)
def retrain_policy(self, collection: str | None = None) -> dict:
    settings = get_settings().for_collection(collection)
    with recorded_run(names.POLICY, self.request.id, settings.collection) as run:
        if lifecycle.is_paused(lifecycle.POLICY_LOOP):
            run.update(status=SKIPPED, reason="paused")
            return dict(run)
        if skipped_unless_loaded(run, settings):
            return dict(run)
        outcome = lifecycle.run_policy(settings)
        # The whole outcome, with every number looked at: the queue page says why it did or did not act.
        run.update(retrain=outcome.retrain, reasons=outcome.reasons, numbers=outcome.numbers, notes=outcome.notes,
                   request_id=outcome.request_id, new_request=outcome.new_request)
        if outcome.new_request:
            # Checked after the request committed: a resume before this check is seen here, one
            # after it finds the request unpublished and publishes it (as the operator's retrain).
            if lifecycle.is_paused(lifecycle.TRAINING_LOOP):
                run.update(published=False, paused=TRAINING_PAUSED)
            else:
                # A broker outage does not undo the committed request, nor fail the run that made it
                # (as the operator's retrain): publish_training left it unpublished for the sweep.
                run["published"] = _sent(run, SWEEP_PUBLISHES, outcome.request_id, collection=settings.collection)
        return dict(run)


def claim_token(hostname: str | None) -> str:
    """Who holds a training lease: this run of this process, not the worker's name, which every
    process of a prefork pool shares (one whose lease lapsed would still pass the fence, and undo
    the claim of its sibling that took the request over)."""
    return f"{hostname or 'worker'}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


# Read once, as the worker imports its tasks: Celery takes a task's time limits from its decorator.
_limits = get_settings()


@app.task(name=names.TRAIN, bind=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=_limits.training_time_limit_seconds,
          time_limit=_limits.hard_time_limit(_limits.training_time_limit_seconds))
def train(self, request_id: int, collection: str | None = None) -> dict:
    # The message's collection, until the result names the request row's (which decides).
    with recorded_run(names.TRAIN, self.request.id, collection) as run:
        run["request_id"] = request_id
        try:
            result = lifecycle.train_request(int(request_id), worker=claim_token(self.request.hostname))
        except lifecycle.TRAINING_REFUSALS:
            raise  # failed for good: no retry to publish
        except Exception as exc:
            # The request went back to queued with a backoff: publish the retry now with that delay;
            # if this message is lost, the sweep republishes it. None for a request failed for good
            # (its last attempt), or that a newer attempt holds. A failure before the request was
            # touched (the database down at the claim) says no state: its message is retried as well.
            # A broker that does not take it is noted: the run fails with the training's error.
            if getattr(exc, "training_request_state", training_requests.QUEUED) == training_requests.QUEUED:
                countdown = get_settings().training_retry_backoff_seconds
                _sent(run, SWEEP_PUBLISHES, request_id, countdown=countdown, collection=collection)
            raise
        run.update(result)
        if "send_again_in" in result:  # another claim holds it: look again once its lease has run out
            if not _sent(run, SWEEP_PUBLISHES_ONCE_LAPSED, request_id, countdown=result["send_again_in"],
                         collection=collection):
                lifecycle.forget_resend(int(request_id))  # not pending: a later duplicate may schedule it
        if result.get("decision") == gates.PROMOTE:  # committed: a lost nowcast request does not fail the training
            _ask_for_nowcast(run, result["collection"])
        return dict(run)


@app.task(name=names.SWEEP, bind=True)
def sweep(self) -> dict:
    with recorded_run(names.SWEEP, self.request.id) as run:
        run["abandoned_runs"] = lifecycle.abandon_stale_runs()  # whatever the loop: any task's run
        if lifecycle.is_paused(lifecycle.TRAINING_LOOP):  # resuming publishes what waits (and fails the abandoned)
            run.update(status=SKIPPED, reason="paused", republished=[], sent_with_countdown=[])
            return dict(run)
        # What a resume publishes too: a request still in its retry's backoff with no message is sent
        # for when the backoff ends, not left to the first sweep after it (up to an hour late).
        due = lifecycle.requests_to_publish()
        sent, with_countdown = [], []
        for request_id, countdown in due:
            # Past the first refusal the broker is down: each further send would wait out the same retries.
            if not _sent(run, f"requests {[i for i, _ in due[len(sent):]]} {NEXT_SWEEP_PUBLISHES}", request_id,
                         countdown=countdown):
                break
            sent.append(request_id)
            if countdown is not None:
                with_countdown.append({"request_id": request_id, "countdown_seconds": round(countdown, 1)})
        run.update(republished=sent, sent_with_countdown=with_countdown)
        return dict(run)


def _sent(run: dict, then: str, request_id: int, **publish) -> bool:
    """publish_training after the request committed, and whether the broker took it. One that did
    not is noted in the run (`not_sent`: why, then `then`, what publishes it later) instead of failing
    the run: the request stays in the database, unpublished, for the sweep."""
    not_sent = send_after_commit(publish_training, request_id, **publish)
    if not_sent is not None:
        run["not_sent"] = f"{not_sent}; {then}"
    return not_sent is None


@app.task(name=names.MONITOR, bind=True)
def monitor(self, collection: str | None = None) -> dict:
    settings = get_settings().for_collection(collection)
    with recorded_run(names.MONITOR, self.request.id, settings.collection) as run:
        if lifecycle.is_paused(lifecycle.MONITOR_LOOP):
            run.update(status=SKIPPED, reason="paused")
            return dict(run)
        if skipped_unless_loaded(run, settings):
            return dict(run)
        run.update(lifecycle.run_monitor(settings))
        if "champion_not_published" in run:  # a rollback, a promotion, or one whose nowcast was lost
            _ask_for_nowcast(run, settings.collection)
        return dict(run)


def _ask_for_nowcast(run: dict, collection: str) -> None:
    """Ask for the nowcast that publishes a new champion's values, after the change committed: a
    broker outage is recorded in the run (`not_sent`), which stays ok, since the change is made and
    a failed run would say otherwise. The monitor finds the champion unpublished and asks again."""
    not_sent = send_after_commit(request_nowcast, collection)
    if not_sent is not None:
        run["not_sent"] = f"{not_sent}; {MONITOR_ASKS_AGAIN}"
