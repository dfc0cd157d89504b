"""A burst of webhook calls shares one follow-up message (api/webhooks.FollowUp): the message
counts the stored sales when it runs, so the calls inside its window need no message of their own."""

from __future__ import annotations

import time

from api.webhooks import FollowUp


class Outbox:
    """Records what would go to the broker, or fails like a broker that is down."""

    def __init__(self, down: bool = False):
        self.sent: list[tuple[str, dict]] = []
        self.down = down

    def __call__(self, name: str, **options) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append((name, options))


def test_one_message_per_window_then_a_new_one():
    outbox = Outbox()
    follow_up = FollowUp(outbox)
    assert [follow_up.request(1, delay=0.3, collection="punks") for _ in range(50)] == ["enqueued"] * 50
    assert len(outbox.sent) == 1
    name, options = outbox.sent[0]
    assert name == "fairvalue.ingest.after_sales" and options["countdown"] == 0.3
    assert options["kwargs"] == {"collection": "punks"}  # the worker re-values the sender's collection
    time.sleep(0.35)
    follow_up.request(2, delay=0.3, collection="punks")
    assert len(outbox.sent) == 2 and outbox.sent[1][1]["args"] == [2]


def test_no_delay_sends_every_time():
    outbox = Outbox()
    follow_up = FollowUp(outbox)
    for _ in range(3):
        follow_up.request(1, delay=0, collection="punks")
    assert len(outbox.sent) == 3 and outbox.sent[0][1]["countdown"] is None


def test_a_broker_that_is_down_is_reported_and_tried_again_next_call():
    outbox = Outbox(down=True)
    follow_up = FollowUp(outbox)
    assert follow_up.request(1, delay=5, collection="punks").startswith("not enqueued (ConnectionError)")
    outbox.down = False
    assert follow_up.request(1, delay=5, collection="punks") == "enqueued"
    assert len(outbox.sent) == 1


def test_covered_while_a_message_is_pending_only():
    outbox = Outbox()
    follow_up = FollowUp(outbox)
    assert not follow_up.covered("punks")
    follow_up.request(1, delay=0.2, collection="punks")
    assert follow_up.covered("punks")
    time.sleep(0.25)
    assert not follow_up.covered("punks")
    assert not FollowUp(Outbox(down=True)).covered("punks")


def test_each_collection_has_its_own_window():
    outbox = Outbox()
    follow_up = FollowUp(outbox)
    follow_up.request(1, delay=5, collection="punks")
    assert follow_up.covered("punks") and not follow_up.covered("cards")
    follow_up.request(1, delay=5, collection="cards")
    assert [options["kwargs"]["collection"] for _, options in outbox.sent] == ["punks", "cards"]


def test_listings_have_their_own_follow_up_task_and_window():
    outbox = Outbox()
    sales, listings = FollowUp(outbox), FollowUp(outbox, task="fairvalue.ingest.after_listings")
    sales.request(1, delay=0.3, collection="punks")
    listings.request(2, delay=0.3, collection="punks")  # a pending sales check would not nowcast for it
    assert [name for name, _ in outbox.sent] == ["fairvalue.ingest.after_sales", "fairvalue.ingest.after_listings"]
