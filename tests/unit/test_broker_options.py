"""The embedded filesystem broker keeps every folder it writes under FAIRVALUE_VAR_DIR: kombu's
default exchange table folder is ./control, in whatever directory a process happens to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairvalue.settings import Settings
from tasks.app import broker_options


def test_every_filesystem_broker_folder_is_under_the_var_dir(tmp_path):
    options = broker_options(Settings(var_dir=tmp_path, broker_url=""))
    folders = {k: Path(v) for k, v in options.items() if k.endswith(("_folder", "_folder_in", "_folder_out"))}
    assert set(folders) == {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"}
    for folder in folders.values():
        assert folder.is_dir() and folder.is_relative_to(tmp_path.resolve())


def test_only_training_is_requeued_when_the_process_under_it_dies():
    """A task that kills the pool child it runs in (out of memory) must not come back forever:
    only training, whose request lease and attempts bound its retries, is rejected back to the queue."""
    from tasks.app import app
    from tasks.lifecycle import train

    assert app.conf.task_acks_late is True and app.conf.task_reject_on_worker_lost is False
    assert train.acks_late is True and train.reject_on_worker_lost is True
    others = [t for name, t in app.tasks.items() if name.startswith("fairvalue.") and name != train.name]
    assert others and not any(t.reject_on_worker_lost for t in others)


def test_a_webhook_follow_up_fails_at_once_when_the_broker_is_down():
    """Sent while Redis refuses connections, the follow-up took some 6 s (kombu reconnecting),
    on every webhook call: it now fails at the first attempt, and the call says "not enqueued"."""
    import time

    from api.webhooks import FollowUp
    from tasks.app import create_app

    nobody = create_app(Settings(broker_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    follow_up = FollowUp(send=lambda name, **options: nobody.send_task(name, **options))
    started = time.monotonic()
    said = follow_up.request(accepted=3, delay=5, collection="cryptopunks")
    assert said.startswith("not enqueued") and time.monotonic() - started < 1.5, said


def test_workers_and_beat_retry_their_sends_and_nothing_else_does():
    """The API's app fails a send at once; worker_init and beat_init switch theirs to
    FAIRVALUE_BROKER_SEND_RETRIES tries (tests/faults/test_redis_restart.py shows one surviving)."""
    from types import SimpleNamespace

    from tasks.app import create_app, patient_sends

    settings = Settings(broker_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    assert app.conf.broker_transport_options["max_retries"] == 0
    assert app.conf.task_publish_retry_policy["max_retries"] == 3  # Celery's default: about a second
    patient_sends(sender=SimpleNamespace(app=app))
    retries = Settings().broker_send_retries
    assert app.conf.broker_transport_options["max_retries"] == retries > 0
    assert app.conf.task_publish_retry_policy["max_retries"] == retries


def test_the_visibility_timeout_outlasts_the_longest_task_a_worker_may_run():
    """Redis must not hand a running training to a second worker: the timeout follows training's
    time limit, or the card price run's (a longer limit moves it), and an explicit transport option still wins."""
    default = Settings(broker_url="redis://127.0.0.1:6379/0")
    longer = Settings(broker_url="redis://127.0.0.1:6379/0", training_time_limit_seconds=4 * 3600)
    assert broker_options(default)["visibility_timeout"] > default.hard_time_limit(default.training_time_limit_seconds)
    assert broker_options(longer)["visibility_timeout"] > longer.hard_time_limit(4 * 3600)
    # The card price run has its own limit (a rate-limited API slows it): a longer one moves it too.
    slow_cards = Settings(broker_url="redis://127.0.0.1:6379/0", card_price_time_limit_seconds=5 * 3600)
    assert broker_options(slow_cards)["visibility_timeout"] > slow_cards.hard_time_limit(5 * 3600)
    shortened = Settings(broker_url="redis://127.0.0.1:6379/0", broker_transport_options={"visibility_timeout": 8})
    assert broker_options(shortened)["visibility_timeout"] == 8


def test_a_connection_attempt_to_redis_is_bounded_in_every_process():
    """kombu sets no connect timeout: a broker host that drops packets would hold each attempt
    for the kernel's ~2 minutes (seven attempts in a worker's patient send)."""
    for patient in (False, True):
        options = broker_options(Settings(broker_url="redis://127.0.0.1:6379/0"), patient_sends=patient)
        assert 0 < options["socket_connect_timeout"] <= 10


def test_a_patient_send_after_kombus_closed_channel_goes_again_with_the_same_task_id(monkeypatch):
    """kombu's AttributeError on the channel its own reconnection closed (FairvalueCelery.send_task):
    a patient app sends once more, with the id of the first try, whether the caller gave one (by
    name or in Celery's position for it) or not; the API's app (no send retries) fails at once."""
    import os
    from types import SimpleNamespace

    from celery import Celery

    from tasks.app import create_app, patient_sends

    namespace: dict = {}
    in_kombu = os.sep.join(["", "site-packages", "kombu", "transport", "virtual", "base.py"])
    exec(compile("def publish():\n    raise AttributeError(\"'NoneType' object has no attribute 'client'\")",  # noqa: S102
                 in_kombu, "exec"), namespace)
    tries: list[str] = []

    def first_fails(self, name, args=None, kwargs=None, countdown=None, eta=None, task_id=None, **options):
        tries.append(task_id)
        if len(tries) % 2:
            namespace["publish"]()
        return SimpleNamespace(id=task_id)

    monkeypatch.setattr(Celery, "send_task", first_fails)
    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    with pytest.raises(AttributeError):
        app.send_task("fairvalue.training.sweep")  # the API's: no second try
    assert len(tries) == 1
    patient_sends(sender=SimpleNamespace(app=app))

    tries.clear()
    made = app.send_task("fairvalue.training.sweep")
    assert len(tries) == 2 and tries[0] == tries[1] == made.id is not None
    tries.clear()
    app.send_task("fairvalue.training.sweep", task_id="by-name")
    assert tries == ["by-name", "by-name"]
    tries.clear()
    app.send_task("fairvalue.training.sweep", [], {}, None, None, "by-position")
    assert tries == ["by-position", "by-position"]


def test_a_message_carries_no_time_limits_so_the_worker_s_own_apply():
    """Celery 5.7 copies the time limits of a task registered in the sending process (from that
    process's settings) into a message sent by name, and the worker obeys the message: every send
    leaves them out, by name or through a task's apply_async as beat sends, so the worker's apply."""
    from tasks import cards  # registered here, with this process's limits
    from tasks.app import create_app
    from tasks.names import CARD_PRICES

    app = create_app(Settings(broker_url="memory://"))
    assert app.tasks[CARD_PRICES].soft_time_limit == cards.collect_card_prices.soft_time_limit > 0
    app.send_task(CARD_PRICES, kwargs={"collection": "cards"}, queue="limits-test")
    app.tasks[CARD_PRICES].apply_async(kwargs={"collection": "cards"}, queue="limits-test")
    with app.connection_for_read() as conn, conn.SimpleQueue("limits-test") as queue:
        for _ in range(2):
            message = queue.get(timeout=2)
            assert message.headers["task"] == CARD_PRICES and message.headers["timelimit"] == [None, None]
            message.ack()
