"""Prometheus metrics of the Celery workers: task runs and durations by task and outcome,
from Celery's task signals.

Each worker serves its own /metrics on FAIRVALUE_WORKER_METRICS_PORT (0 = off), started in the
worker's main process. Tasks run in the pool's child processes (prefork), so counts must cross
processes: with PROMETHEUS_MULTIPROC_DIR set (as docker-compose does), every process writes its
samples to files there and the main process's endpoint adds them up (prometheus-client's
multiprocess mode). The directory is emptied when the worker starts. With the solo pool the
directory is not needed. Why not one /metrics for API and workers: they run in different
containers, and multiprocess files are keyed by pid, which is not unique across containers.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from celery.signals import task_postrun, task_prerun, worker_init
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from fairvalue.settings import get_settings

log = logging.getLogger("fairvalue.metrics")
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROC_DIR:
    Path(MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

TASK_RUNS = Counter("fairvalue_task_runs", "Celery task runs by task and outcome", ["task", "outcome"])
TASK_SECONDS = Histogram("fairvalue_task_duration_seconds", "Celery task duration by task and outcome",
                         ["task", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id=None, **_):
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    outcome = (state or "unknown").lower()  # success, failure, retry, ...
    TASK_RUNS.labels(name, outcome).inc()
    if started is not None:
        TASK_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)


def serve(port: int) -> None:
    """Serve /metrics on `port` from this (the worker's main) process."""
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        for stale in Path(MULTIPROC_DIR).glob("*.db"):  # a restarted container keeps its files
            stale.unlink()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:  # another worker of this host has the port: say so, the worker still works
        log.error("worker metrics NOT served: port %d: %s (give each worker of a host its own "
                  "FAIRVALUE_WORKER_METRICS_PORT)", port, exc.strerror or exc)
        return
    log.info("worker metrics on :%d%s", port, " (multiprocess)" if MULTIPROC_DIR else "")


@worker_init.connect
def _serve_metrics(**_):
    port = get_settings().worker_metrics_port
    if port:
        serve(port)
