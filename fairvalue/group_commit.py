"""Group commit: many concurrent callers, one writer thread, one transaction per batch.

A caller submits its work and waits on a future. The writer takes everything waiting (up to
`max_batch`) and hands it to `process_batch` in arrival order; each caller's future gets ITS
result. There is no linger timer: a lone call is processed as soon as the writer is free, so
latency at low load does not grow; batches only form while the writer is busy, i.e. exactly
when sharing a transaction pays (a webhook call's ~8 round trips become ~8 per batch).

If `process_batch` raises, every call of the batch is retried alone with `process_one`, so one
bad call cannot fail the others; a call that fails alone gets its own exception. An error that
no single call can have caused (`retry_alone(exc)` is False: the database is unreachable) is
given to every call of the batch at once: retrying them one by one would make the last caller
wait out one connect timeout per call before it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger("fairvalue.group_commit")
Work, Result = TypeVar("Work"), TypeVar("Result")


def take_waiting(pending: queue.SimpleQueue, first, limit: int) -> list:
    """`first` and whatever else is already waiting, up to `limit` items, in arrival order."""
    batch = [first]
    while len(batch) < limit:
        try:
            batch.append(pending.get_nowait())
        except queue.Empty:
            break
    return batch


class GroupCommitter(Generic[Work, Result]):
    def __init__(self, process_batch: Callable[[Sequence[Work]], Sequence[Result]],
                 process_one: Callable[[Work], Result], max_batch: int = 64, name: str = "group-commit",
                 retry_alone: Callable[[Exception], bool] = lambda exc: True) -> None:
        self._process_batch = process_batch
        self._retry_alone = retry_alone
        self._process_one = process_one
        self._max_batch = max_batch
        self._name = name
        self._pending: queue.SimpleQueue[tuple[Work, Future]] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, work: Work) -> Future:
        """Queue `work`; the future resolves to its result (or raises its error)."""
        future: Future = Future()
        self._pending.put((work, future))
        self._ensure_writer()
        return future

    def submit_all(self, works: Sequence[Work]) -> list[Future]:
        """Queue several works at once: the writer finds them all waiting (one batch if it is idle)."""
        futures = [Future() for _ in works]
        for work, future in zip(works, futures, strict=True):
            self._pending.put((work, future))
        self._ensure_writer()
        return futures

    def _ensure_writer(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            return
        with self._start_lock:  # started on first use: importing the API must not start threads
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._writer.start()

    def _run(self) -> None:
        while True:
            batch = take_waiting(self._pending, self._pending.get(), self._max_batch)
            try:
                self._settle(batch)
            except BaseException:  # never let the writer die with callers waiting
                log.exception("group commit writer failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("group commit writer failed"))

    def _settle(self, batch: list[tuple[Work, Future]]) -> None:
        works = [work for work, _ in batch]
        if len(batch) > 1:
            try:
                results = self._process_batch(works)
            except Exception as exc:
                if not self._retry_alone(exc):
                    log.warning("batch of %d failed (%s: %s); every call gets the error", len(batch),
                                type(exc).__name__, exc)
                    for _, future in batch:
                        future.set_exception(exc)
                    return
                log.warning("batch of %d failed (%s: %s); each call is retried alone", len(batch),
                            type(exc).__name__, exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
                return
        for work, future in batch:  # a lone call, or the fallback after a failed batch
            try:
                future.set_result(self._process_one(work))
            except Exception as exc:
                future.set_exception(exc)
