"""A stand-in for the card price API, for the tests that run a card price collection against one:
the answer a card's price is given in, and a server on a free local port. Each test's API is a
subclass of PriceAPIHandler with its own do_GET (what it counts, refuses or delays)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date()
PRICE = 12.5  # what the API answers for a card it prices: yesterday's price


class PriceAPIHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass  # a line on stderr per request, hundreds per run

    def reply(self, status: int, body: bytes, content_type: str | None = "application/json") -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_with_the_price(self) -> None:
        """The card's PRICE for YESTERDAY, as the real API gives a card's price history."""
        self.reply(200, json.dumps({"data": [{"priceHistory": {str(YESTERDAY): PRICE}}]}).encode())


@contextmanager
def serving(handler: type[PriceAPIHandler]) -> Iterator[str]:
    """`handler`'s API on a free local port, each connection in a thread of its own (a daemon: one
    a test leaves dripping does not hold the process); its base URL, as the settings name it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2"
    finally:
        server.shutdown()
        server.server_close()
