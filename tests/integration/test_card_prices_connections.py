"""One card price run keeps one connection to the price API: the client opened a new one (a connect,
and a TLS handshake on the real API) for every card. Still each failing card is its own rejection,
and the whole-answer timeout still cuts off a server that drips its headers over the reused
connection, which then gives way to a new one."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import SecretStr
from sqlmodel import select

from fairvalue import card_prices
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.prices import card_keys
from storage.tables import DailyPrice, RejectedSale
from tests.fake_price_api import PRICE, YESTERDAY, PriceAPIHandler, serving

pytestmark = pytest.mark.integration
COLLECTION = "cardsconn"  # its own collection: no other test's prices or rejections


class KeepAlivePriceAPI(PriceAPIHandler):
    """HTTP/1.1 with keep-alive, as the real API: each request noted with the client port of its
    connection. `answers`: per TCGplayer id, "404", "500" or "drip" (a status line, then a header
    a byte every 0.1 s that never ends); any other card gets its price (reply_with_the_price)."""

    protocol_version = "HTTP/1.1"
    answers: dict[str, str] = {}
    calls: list[tuple[str, int]] = []

    def do_GET(self):
        tcg = parse_qs(urlparse(self.path).query).get("tcgPlayerId", [""])[0]
        KeepAlivePriceAPI.calls.append((tcg, self.client_address[1]))
        answer = KeepAlivePriceAPI.answers.get(tcg)
        if answer == "drip":
            self.close_connection = True
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(600):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client shut the connection at its timeout
                pass
            return
        if answer in ("404", "500"):
            self.reply(int(answer), f"error {answer}".encode())
        else:
            self.reply_with_the_price()


@pytest.fixture
def price_api():
    with serving(KeepAlivePriceAPI) as url:
        yield url


def test_one_run_over_every_card_keeps_one_connection_and_records_each_failing_card(database, price_api):
    from fairvalue.card_universe import load_universe, read_universe

    universe = read_universe(get_settings().cards_config)
    universe.collection = COLLECTION
    load_universe(universe)
    with session_scope() as session:
        ext = {key: str(a["external_id"]) for key, a in
               card_keys(session, ensure_collection(session, COLLECTION), active_only=True).items()}
    keys = sorted(ext)  # the order the run asks in
    missing, erring, dripping = keys[3], keys[7], keys[20]
    KeepAlivePriceAPI.answers = {ext[missing]: "404", ext[erring]: "500", ext[dripping]: "drip"}
    KeepAlivePriceAPI.calls = []
    settings = get_settings().for_collection(COLLECTION).model_copy(update={
        "card_price_api_url": price_api, "card_price_api_key": SecretStr("k-conn"),
        "card_price_timeout_seconds": 1.0, "card_price_max_attempts": 2, "card_price_backoff_seconds": 0.01})

    began = time.monotonic()
    report = card_prices.collect(settings)  # the run's own client, as the daily task's
    took = time.monotonic() - began

    calls = KeepAlivePriceAPI.calls
    assert report.cards == len(keys) and len(calls) == len(keys) + 2  # the 500 and the drip asked twice
    # One connection up to the dripping card, cut off at the timeout over it; its second attempt
    # over a new one, cut off too; the cards after it share a third. A connection per request was 42.
    ports = [port for _, port in calls]
    assert len(set(ports)) == 3, f"{len(set(ports))} connections for {len(calls)} requests"
    first_drip = [tcg for tcg, _ in calls].index(ext[dripping])
    assert len(set(ports[:first_drip + 1])) == 1 and calls[first_drip + 1][0] == ext[dripping]
    assert len(set(ports[first_drip + 2:])) == 1
    assert took < 2 * 1.0 + 10  # each drip attempt lasted its timeout, not the server's minute

    assert report.cards_failed == {missing: "http_404", erring: "http_500", dripping: "timeout"}
    with session_scope() as session:
        coll = ensure_collection(session, COLLECTION)
        rejected = session.exec(select(RejectedSale).where(RejectedSale.collection_id == coll.id)).all()
        prices = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id)).all()
    assert {(r.row["card_id"], r.reason) for r in rejected} == {
        (missing, "http_404"), (erring, "http_500"), (dripping, "timeout")}
    assert {r.row["card_id"]: r.row["attempts"] for r in rejected} == {missing: 1, erring: 2, dripping: 2}
    assert "error 500" in next(r.detail for r in rejected if r.reason == "http_500")
    assert len(prices) == len(keys) - 3 and {(p.day, p.price) for p in prices} == {(YESTERDAY, PRICE)}
