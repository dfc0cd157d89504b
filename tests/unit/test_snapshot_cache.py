"""The API's held snapshot (fairvalue/snapshot_cache.py): hits need no pointer read, a moved
pointer is seen after the check interval, and a burst at a moved pointer loads it once."""

from __future__ import annotations

import threading
import time

import pytest

from fairvalue.snapshot_cache import PointerCache


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """A published pointer per collection, counting reads and loads."""

    def __init__(self, pointers: dict[str, int | None], load_seconds: float = 0.0):
        self.pointers = pointers
        self.pointer_reads = 0
        self.loads: list[tuple[str, int]] = []
        self.load_seconds = load_seconds

    def read_pointer(self, slug: str) -> int | None:
        self.pointer_reads += 1
        return self.pointers.get(slug)

    def load(self, slug: str, pointer: int) -> str:
        time.sleep(self.load_seconds)
        self.loads.append((slug, pointer))
        return f"{slug}@{pointer}"


class Deferred:
    """Stands in for the background thread of a check ahead: runs it when the test says."""

    def __init__(self):
        self.work: list = []

    def __call__(self, work) -> None:
        self.work.append(work)

    def run(self) -> None:
        while self.work:
            self.work.pop(0)()


def make(store: FakeStore, check_seconds: float = 1.0, clock=None, spawn=None) -> PointerCache:
    return PointerCache(store.read_pointer, store.load, lambda: check_seconds, clock or FakeClock(),
                        spawn or Deferred())


def test_a_hit_within_the_interval_reads_nothing():
    store, clock = FakeStore({"punks": 1}), FakeClock()
    cache = make(store, clock=clock)
    assert cache.peek("punks") is None  # nothing held yet
    assert cache.get("punks") == "punks@1"
    clock.now += 0.9
    assert cache.peek("punks") == "punks@1" and cache.get("punks") == "punks@1"
    assert store.pointer_reads == 1 and store.loads == [("punks", 1)]


def test_a_moved_pointer_is_seen_after_the_interval_and_loaded_once():
    store, clock = FakeStore({"punks": 1}), FakeClock()
    cache = make(store, clock=clock)
    cache.get("punks")
    store.pointers["punks"] = 2
    clock.now += 0.5
    assert cache.get("punks") == "punks@1"  # within the interval: the held one, no read
    clock.now += 0.6
    assert cache.peek("punks") is None  # due: the event loop must not answer from it
    assert cache.get("punks") == "punks@2"
    clock.now += 1.1
    assert cache.get("punks") == "punks@2"  # checked again, pointer unchanged: not reloaded
    assert store.pointer_reads == 3 and store.loads == [("punks", 1), ("punks", 2)]


def test_interval_zero_reads_the_pointer_on_every_request():
    store = FakeStore({"punks": 1})
    cache = make(store, check_seconds=0, clock=time.monotonic)
    for _ in range(3):
        assert cache.get("punks") == "punks@1"
        assert cache.peek("punks") is None
    store.pointers["punks"] = 2
    assert cache.get("punks") == "punks@2"
    assert store.pointer_reads == 4 and len(store.loads) == 2


def test_collections_are_held_apart_and_nothing_published_is_not_held():
    store = FakeStore({"punks": 1, "cards": 7})
    cache = make(store)
    assert (cache.get("punks"), cache.get("cards"), cache.get("nope")) == ("punks@1", "cards@7", None)
    assert cache.get("nope") is None and store.pointer_reads == 4  # an unknown slug holds no entry
    assert "nope" not in cache._entries


def test_invalidate_makes_the_next_read_check_at_once():
    store, clock = FakeStore({"punks": 1}), FakeClock()
    cache = make(store, check_seconds=60, clock=clock)
    cache.get("punks")
    store.pointers["punks"] = 2
    cache.invalidate("punks")  # what a publish in this process does after its commit
    assert cache.peek("punks") is None
    assert cache.get("punks") == "punks@2"


def test_a_burst_at_a_moved_pointer_loads_it_once():
    """32 threads arrive while the pointer has moved; one reads it and loads (slowly), the
    others wait and take that load instead of checking and loading again."""
    store = FakeStore({"punks": 1}, load_seconds=0.2)
    cache = make(store, check_seconds=0, clock=time.monotonic)
    start = threading.Barrier(32)
    results: list[str | None] = []

    def read():
        start.wait()
        results.append(cache.get("punks"))

    threads = [threading.Thread(target=read) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == ["punks@1"] * 32
    assert store.loads == [("punks", 1)]
    # Those that arrived while the first check ran waited for it and took its answer; at most
    # the few that arrived after it started check again (the pointer, not a load).
    assert store.pointer_reads < 32


def test_a_publish_during_a_check_is_not_hidden_for_the_interval():
    """The pointer is read, then a publish commits and invalidates while the load runs: the
    entry stored from that read must be checked again at the next request."""
    store = FakeStore({"punks": 1})
    cache = make(store, check_seconds=60, clock=time.monotonic)

    def load_while_publishing(slug, pointer):
        store.pointers["punks"] = 2
        cache.invalidate("punks")
        return f"{slug}@{pointer}"

    cache._load = load_while_publishing
    assert cache.get("punks") == "punks@1"
    assert cache.peek("punks") is None
    assert cache.get("punks") == "punks@2"


def test_past_half_the_interval_a_read_answers_and_checks_ahead_once():
    store, clock, spawn = FakeStore({"punks": 1}), FakeClock(), Deferred()
    cache = make(store, clock=clock, spawn=spawn)
    cache.get("punks")
    clock.now += 0.4
    assert cache.peek("punks") == "punks@1" and spawn.work == []  # young: no check
    clock.now += 0.2
    store.pointers["punks"] = 2
    assert cache.peek("punks") == "punks@1" and cache.peek("punks") == "punks@1"  # still within the bound
    assert len(spawn.work) == 1  # one check ahead, however many reads
    spawn.run()
    assert cache.peek("punks") == "punks@2" and store.loads == [("punks", 1), ("punks", 2)]
    clock.now += 0.9  # 0.9 s after the check ahead, 1.5 s after the first: fresh, no blocking check
    assert cache.peek("punks") == "punks@2"


def test_a_failed_check_ahead_leaves_the_due_read_to_report_it():
    store, clock, spawn = FakeStore({"punks": 1}), FakeClock(), Deferred()
    cache = make(store, clock=clock, spawn=spawn)
    cache.get("punks")
    clock.now += 0.6
    cache.peek("punks")

    def down(slug):
        raise ConnectionError("database down")

    cache._read_pointer = down
    spawn.run()  # logged, not raised
    clock.now += 0.5
    assert cache.peek("punks") is None
    with pytest.raises(ConnectionError):
        cache.get("punks")
