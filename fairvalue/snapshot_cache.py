"""A value per collection, built from whatever its published pointer points at, held in memory.

The API answers item reads from the published snapshot, whose rows never change once built:
only the pointer moves. So the snapshot can be held in the process and the database asked
only whether the pointer moved, at most once every `check_seconds` per collection, instead of
once per request. Nothing here knows about the database: `read_pointer` and `load` are given
(fairvalue/item_reads.py passes the real ones, tests pass counting fakes).

Freshness: a request sees a pointer read at most `check_seconds` before it (0: read after it
arrived, so a publish committed before a request is always seen). `invalidate` drops an entry
at once, for publishes made in this process.

Single flight: one lock serialises pointer reads and loads. A request that waited for it
takes the entry a check started after its arrival made, instead of checking again; so a
burst of requests at a moved pointer loads the new snapshot once. One lock for every
collection (not one each) keeps the lock table from growing with made-up slugs; checks are
one small query and loads happen once per publish, so they rarely queue behind each other.

Checking ahead: a read that finds its entry past half the interval still answers from it and
starts one check in a background thread, so under steady traffic the entry is confirmed
before it falls due and reads never wait for a check (without it, every interval the reads
arriving during a check hopped to threads and queued behind it: the p99 of bench/api.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fairvalue.snapshot_cache")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    pointer: Hashable
    value: T
    checked_at: float  # clock reading taken just BEFORE the pointer read that confirmed `pointer`


class PointerCache(Generic[T]):
    def __init__(self, read_pointer: Callable[[str], Hashable | None], load: Callable[[str, Hashable], T],
                 check_seconds: Callable[[], float], clock: Callable[[], float] = time.monotonic,
                 spawn: Callable[[Callable[[], object]], None] | None = None):
        self._read_pointer = read_pointer  # slug -> pointer, or None when nothing is published
        self._load = load  # (slug, pointer) -> the value to hold for that pointer
        self._check_seconds = check_seconds  # read on every call, so a settings change applies at once
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}  # only collections with a published pointer
        self._lock = threading.Lock()
        self._invalidations = 0
        self._spawn = spawn or (lambda work: threading.Thread(target=work, daemon=True).start())
        self._checking_ahead = False

    def peek(self, slug: str) -> T | None:
        """The held value when it needs no pointer check now; None otherwise. Never does I/O,
        so it is safe on the event loop."""
        entry = self._entries.get(slug)
        if entry is None:
            return None
        now, interval = self._clock(), self._check_seconds()
        age = now - entry.checked_at
        if age >= interval:
            return None
        if age >= interval / 2 and not self._checking_ahead:
            self._checking_ahead = True
            self._spawn(lambda: self._check_ahead(slug, now))
        return entry.value

    def get(self, slug: str) -> T | None:
        """The value for the collection's published pointer (checked if due, loaded if it
        moved), or None when the collection has no published pointer. Blocks on I/O."""
        arrived = self._clock()
        value = self.peek(slug)
        if value is not None:
            return value
        return self._check(slug, arrived, ahead=False)

    def _check_ahead(self, slug: str, asked: float) -> None:
        try:
            self._check(slug, asked, ahead=True)
        except Exception as exc:  # the database is down: the read that finds the entry due reports it
            log.warning("checking the published pointer of %s ahead failed: %s", slug, exc)
        finally:
            self._checking_ahead = False

    def _check(self, slug: str, arrived: float, ahead: bool) -> T | None:
        with self._lock:
            entry = self._entries.get(slug)
            if entry is not None and (entry.checked_at >= arrived  # checked since we arrived: as good as ours
                                      or (not ahead and self._clock() - entry.checked_at < self._check_seconds())):
                return entry.value
            invalidations = self._invalidations
            started = self._clock()
            pointer = self._read_pointer(slug)
            if pointer is None:
                self._entries.pop(slug, None)
                return None
            value = entry.value if entry is not None and entry.pointer == pointer else self._load(slug, pointer)
            if self._invalidations != invalidations:
                started = float("-inf")  # a publish committed during our read: check again next time
            self._entries[slug] = _Entry(pointer, value, started)
            return value

    def invalidate(self, slug: str | None = None) -> None:
        """Forget one collection's entry (all when `slug` is None): the next read checks the pointer."""
        self._invalidations += 1
        if slug is None:
            self._entries.clear()
        else:
            self._entries.pop(slug, None)
