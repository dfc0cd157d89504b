"""A worker whose metrics port another process of the host holds says so in its log and runs on.
The second of two workers given one FAIRVALUE_WORKER_METRICS_PORT served no metrics and said
nothing (the OSError was lost in Celery's worker_init signal)."""

from __future__ import annotations

import logging
import socket

from tasks import metrics


def test_a_port_taken_is_logged_as_an_error_and_the_worker_goes_on(caplog):
    with socket.socket() as holder:
        holder.bind(("", 0))  # as start_http_server binds (every interface)
        holder.listen()
        port = holder.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="fairvalue.metrics"):
            metrics.serve(port)  # no exception: the worker still starts
    [record] = [r for r in caplog.records if r.name == "fairvalue.metrics"]
    assert record.levelno == logging.ERROR
    assert f"worker metrics NOT served: port {port}: Address already in use" in record.getMessage()
    assert "FAIRVALUE_WORKER_METRICS_PORT" in record.getMessage()
