"""The price client reads a compressed answer itself, never past MAX_BODY_BYTES once inflated:
httpx inflated each network chunk whole, and a "gzip, gzip" answer of 826 bytes became 400 MB in
the worker before the size check saw it. Served from a local socket, as a price API would."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import tracemalloc

import pytest

from fairvalue.card_prices import MAX_BODY_BYTES, PriceAPIError, PriceTrackerClient


def _serve_once(body: bytes, encoding: str) -> str:
    """A one-answer HTTP server on a free port: its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    + (f"Content-Encoding: {encoding}\r\n" if encoding else "") + "Connection: close\r\n\r\n")
            try:
                conn.sendall(head.encode() + body)
            except OSError:  # the client stopped reading: what a refusal does
                pass
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def _ask(body: bytes, encoding: str):
    client = PriceTrackerClient(_serve_once(body, encoding), "key", timeout=20, max_attempts=1)
    try:
        return client.card("1", 30)
    finally:
        client.close()


ANSWER = {"data": [{"tcgPlayerId": "1", "priceHistory": {}}]}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", ""])
def test_an_answer_in_an_encoding_asked_for_is_read(encoding):
    raw = json.dumps(ANSWER).encode()
    body = {"gzip": gzip.compress, "deflate": __import__("zlib").compress, "": bytes}[encoding](raw)
    assert _ask(body, encoding) == ANSWER


def test_a_small_answer_that_inflates_past_the_limit_is_refused_as_it_inflates():
    bomb = gzip.compress(b" " * (80 * MAX_BODY_BYTES), 9)  # 400 MB of spaces in about 400 kB
    tracemalloc.start()
    try:
        with pytest.raises(PriceAPIError, match=f"body over {MAX_BODY_BYTES} bytes"):
            _ask(bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_BODY_BYTES  # httpx inflated a whole network chunk first: 65 MB per 64 kB read


@pytest.mark.parametrize("encoding, problem", [("gzip, gzip", "was not asked for"), ("br", "was not asked for")])
def test_an_encoding_not_asked_for_is_a_malformed_answer(encoding, problem):
    with pytest.raises(PriceAPIError, match=problem) as refused:
        _ask(gzip.compress(gzip.compress(json.dumps(ANSWER).encode())), encoding)
    assert refused.value.reason == "malformed_response"


def test_a_compressed_answer_cut_short_is_a_malformed_answer():
    whole = gzip.compress(json.dumps(ANSWER).encode())
    with pytest.raises(PriceAPIError, match="ends before its end"):
        _ask(whole[: len(whole) // 2], "gzip")


def test_a_server_that_drips_its_headers_is_cut_off_at_the_timeout():
    """Each read came within httpx's timeout, and the whole answer's check began after the headers:
    one header byte every 0.2 s held the call for as long as the server went on (days, at 9 s)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.2):  # a header that never ends
                    conn.sendall(b"X")
            except OSError:  # the client shut the connection: what the cut-off does
                pass
        listener.close()

    threading.Thread(target=drip, daemon=True).start()
    client = PriceTrackerClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "key", timeout=1.0, max_attempts=1)
    began = time.monotonic()
    try:
        with pytest.raises(PriceAPIError) as refused:
            client.card("1", 30)
    finally:
        stop.set()
        client.close()
    assert refused.value.reason == "timeout" and "no answer within 1.0s" in str(refused.value)
    assert time.monotonic() - began < 20  # the server would have gone on until stopped
