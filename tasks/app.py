"""The one Celery app. Broker and queues come from settings and tasks/queues.py."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy.exc
from celery import Celery, Task
from celery.signals import beat_init, worker_init, worker_process_init
from celery.utils import uuid
from celery.utils.time import get_exponential_backoff_interval
from kombu import Queue

import beat_schedule
from fairvalue.settings import Settings, get_settings
from storage.db import database_now, get_engine, why_unreachable
from tasks import names, queues

TASK_MODULES = ["tasks.nowcast", "tasks.ingest", "tasks.lifecycle", "tasks.cards"]
log = logging.getLogger(__name__)


# How a worker's or beat's send waits for a broker that went away: tries 0.5 s, 1 s, 1.5 s, then 2 s apart.
SEND_BACKOFF = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}
# Seconds one connection attempt to Redis may take (a local or same-network broker answers in ms).
BROKER_CONNECT_TIMEOUT = 5.0


def broker_options(settings: Settings, patient_sends: bool = False) -> dict:
    url = settings.resolved_broker_url()
    if url.startswith("filesystem://"):
        # The embedded broker: messages are files in var/broker, shared by every process.
        folder = settings.broker_folder
        # The exchange table too (kombu's default is ./control, in whatever directory a process runs).
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
                "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
                "store_processed": False}
    # Redis redelivers an unacked message (its worker died) after visibility_timeout. The fault
    # tests shorten it to see a killed worker's message come back.
    # max_retries 0: a message sent while the broker is down fails at its first connection
    # attempt, rather than after some 6 s of kombu reconnecting (default_channel), so a webhook's
    # follow-up or an operator's request answers at once that it was not sent (FollowUp,
    # send_after_commit; the periodic tasks catch up). Workers and beat have no one waiting on
    # them: a send after a committed change (the policy's training request, a promotion's or a
    # rollback's nowcast) that still fails is recorded as the run's `not_sent` and the periodic tasks
    # catch up; theirs try FAIRVALUE_BROKER_SEND_RETRIES times (send_options); count-bound, so
    # Celery's 4 s connect_retries_timeout does not cut the backoff short. Each attempt is bounded
    # by socket_connect_timeout: kombu sets none, so a broker host that drops packets (rather than
    # refusing) held each attempt for the kernel's ~2 min, a worker's send for a quarter of an hour.
    sends = ({"max_retries": settings.broker_send_retries, "connect_retries_timeout": None, **SEND_BACKOFF}
             if patient_sends else {"max_retries": 0})
    return {"visibility_timeout": visibility_timeout(settings), "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
            **sends, **settings.broker_transport_options}


def visibility_timeout(settings: Settings) -> int:
    """Redis gives an unacked message back after this long: longer than any task with a time limit
    may run (the longest hard limit, training's by default, and ten minutes more), so a slow one is
    not started twice by the broker; it follows FAIRVALUE_TRAINING_, _NOWCAST_ and
    _CARD_PRICE_TIME_LIMIT_SECONDS. The database lease guards training anyway, and a card-price run
    delivered again stores from the answers already kept for its day. The other tasks have no limit
    and take seconds to minutes."""
    return max(2 * 3600, settings.longest_task_seconds() + 600)


def send_options(settings: Settings, patient_sends: bool = False) -> dict:
    """How sends meet a broker that went away, as Celery settings. Two knobs, since kombu
    retries in two places: connecting a fresh or dropped connection (the transport options'
    max_retries), and a publish whose connection breaks (Celery's publish retry policy; its
    default, 3 tries within about a second, stays the API's)."""
    options: dict[str, Any] = {"broker_transport_options": broker_options(settings, patient_sends)}
    if patient_sends:
        options["task_publish_retry_policy"] = {"max_retries": settings.broker_send_retries, **SEND_BACKOFF}
    return options


# A database that restarts, fails over or drops a connection: the task is sent again, later,
# rather than failed (acked late, a failed task's message is gone; every task is idempotent).
TRANSIENT_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DisconnectionError, psycopg.OperationalError)
# Training is left out: its request row carries its own retry (a lease, an attempt count and a
# backoff; tasks/lifecycle.py publishes the retry itself), and a second message would train twice.
NOT_RETRIED = frozenset({names.TRAIN})


class FairvalueTask(Task):
    """Every task's defaults: retried on a transient database error, up to max_retries times,
    after a random wait of up to 5, 10, 20, 40, 80 and 160 seconds (random, so the tasks that
    all failed at once do not all come back at once): a few minutes in all."""

    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 6

    @property
    def autoretry_for(self) -> tuple[type[BaseException], ...]:  # read once, as each task is made
        return () if self.name in NOT_RETRIED else TRANSIENT_ERRORS

    def retry_with(self, exc: BaseException, **kwargs: Any):
        """The Retry autoretry_for would raise (same backoff, same count), sent with these keyword
        arguments over the message's: a task passes on what an expensive first step already made."""
        countdown = get_exponential_backoff_interval(self.retry_backoff, self.request.retries, self.retry_backoff_max,
                                                     self.retry_jitter)
        return self.retry(kwargs={**(self.request.kwargs or {}), **kwargs}, exc=exc, countdown=countdown)


def _raised_in_kombu(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}kombu{os.sep}" in tb.tb_frame.f_code.co_filename


# Celery's own signature says whether a caller passed a task id, by name or by position.
_CELERY_SEND_TASK = inspect.signature(Celery.send_task)


class FairvalueCelery(Celery):
    def send_task(self, name: str, *args: Any, **kwargs: Any):
        """A patient send (a worker's or beat's, send_options) tries once more after kombu's
        AttributeError on a closed channel. Sent while Redis is down on a connection that was
        open, and the first send of its queue on it, kombu's publish declares the queue with a
        retry of its own: that retry reconnects and closes the channel the publish already
        holds, whose next use fails with "'NoneType' object has no attribute 'client'", no
        connection error, so no publish retry either (kombu 5.7; a solo-pool worker met it in
        the Redis restart fault test). The reconnection is made by then and the queue declared;
        nothing was sent (the push comes after), and a second send goes through. Same task id:
        every task is idempotent anyway.

        No send carries time limits: a task is stopped by the limits of the worker that runs it
        (its settings, which also size a training's lease). Celery 5.7 otherwise puts into a
        message sent by name the limits of the task as the sender registered it, from the
        sender's settings, and the worker obeys those: a training worker's own limit was ignored
        whenever the general worker that published the request had another. A limit passed here
        is dropped too (no caller passes one): Task.apply_async passes the registry's as if given."""
        kwargs["time_limit"] = kwargs["soft_time_limit"] = None
        if _CELERY_SEND_TASK.bind(self, name, *args, **kwargs).arguments.get("task_id") is None:
            kwargs["task_id"] = uuid()  # one id for both sends
        try:
            return super().send_task(name, *args, **kwargs)
        except AttributeError as exc:
            if not (self.conf.broker_transport_options.get("max_retries") and _raised_in_kombu(exc)):
                raise
            log.warning("sending %s met a channel kombu closed while reconnecting (%s); sending again", name, exc)
            return super().send_task(name, *args, **kwargs)


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = FairvalueCelery("fairvalue", include=TASK_MODULES, task_cls=FairvalueTask)
    app.conf.update(
        broker_url=settings.resolved_broker_url(),
        **send_options(settings),  # the API's: fail fast; workers and beat switch to theirs as they start
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,  # outcomes are recorded in task_runs, not a result backend
        task_default_queue=queues.DEFAULT,
        task_queues=[Queue(name, routing_key=name) for name in queues.ALL],
        task_routes={
            names.NOWCAST: {"queue": queues.NOWCAST},
            names.ARCHIVE: {"queue": queues.DEFAULT},
            "fairvalue.ingest.*": {"queue": queues.INGEST},
            names.TRAIN: {"queue": queues.TRAINING},
            names.SWEEP: {"queue": queues.DEFAULT},
            names.POLICY: {"queue": queues.DEFAULT},
            names.MONITOR: {"queue": queues.DEFAULT},
        },
        # Acked after they ran: a task whose whole worker died is redelivered after the visibility
        # timeout (our tasks are idempotent). A pool child killed under a task (out of memory, say)
        # would be requeued at once, every time, with reject_on_worker_lost: only training sets it
        # (tasks/lifecycle.py), whose request lease and attempt count bound the retries; a lost
        # nowcast, policy or monitor run is the next beat's.
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule.SCHEDULE,
        beat_scheduler="tasks.beat:SingletonScheduler",
        # The schedule file is written after every task beat sends (celery's default: every
        # 3 minutes), so a beat killed (-9, a lost host) does not send again on restart what it
        # sent just before: the daily card prices call a paid API.
        beat_sync_every=1,
        worker_send_task_events=True,  # for Flower
        task_send_sent_event=True,
    )
    return app


app = create_app()


@worker_init.connect
@beat_init.connect
def patient_sends(sender, **_) -> None:
    """Workers and beat retry a send through a broker blip (send_options); every other process
    (the API, commands) keeps failing fast. Set as they start, before either opens a connection
    to send (a prefork child inherits it)."""
    sender.app.conf.update(send_options(get_settings(), patient_sends=True))


@worker_process_init.connect
def fresh_connections_in_each_child(**_) -> None:
    """A prefork child starts with a copy of its parent's connection pool: it drops the copies
    without closing them (they are the parent's sockets) and opens its own (SQLAlchemy's recipe
    for forked processes)."""
    get_engine().dispose(close=False)


class DatabaseUnreachable(SystemExit):
    """Exits the process with this message on stderr and status 1 (no traceback)."""


@worker_init.connect
def refuse_to_start_without_the_database(**_) -> None:
    """Every task reads or records in the database: a worker that cannot reach it would say
    `ready`, take messages and fail each one. It stops before it takes any."""
    reason = why_unreachable()
    # The check's pooled connection must not outlive it here: prefork children inherit the
    # parent's pool, and two processes on one socket read each other's answers.
    get_engine().dispose()
    if reason:
        raise DatabaseUnreachable(f"fairvalue worker: the database cannot be reached ({reason}); not starting")


# A requested nowcast still queued after this long is dropped: beat's own has run by then.
REQUESTED_NOWCAST_EXPIRES_SECONDS = 3600


def request_nowcast(collection: str, countdown: float | None = None) -> None:
    """Ask for an out-of-cycle nowcast of one collection. Always name it: a worker's default
    collection is its own environment's, not the sender's. The request says when it was made: a
    snapshot published from a read after that already serves it (tasks/nowcast.py), so the
    requests of a steady stream of sales made while one nowcast runs collapse into the next
    one, rather than queueing a full nowcast each. Both moments are the database's clock: the
    sender's and the nowcast worker's own clocks may differ. `countdown`: run it no sooner than
    this many seconds from now."""
    requested_at = database_now().isoformat()
    app.send_task(names.NOWCAST, kwargs={"collection": collection, "requested_at": requested_at},
                  queue=queues.NOWCAST, expires=REQUESTED_NOWCAST_EXPIRES_SECONDS, countdown=countdown)


def send_after_commit(send: Callable[..., Any], *args: Any, **kwargs: Any) -> str | None:
    """Send the message that follows a committed change: None once sent, else why it was not.
    A broker outage must not turn the committed change into an error, which a caller would
    retry (a second training request, a promote that answers "unchanged" and asks nothing);
    the periodic tasks pick it up (the training sweep republishes, beat's nowcast revalues)."""
    try:
        send(*args, **kwargs)
    except Exception as exc:  # kombu's OperationalError, after its own publish retries
        log.warning("%s not sent: %s", getattr(send, "__name__", send), exc)
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None

import tasks.metrics  # noqa: E402,F401  (connects the task-metrics signals in every worker)
