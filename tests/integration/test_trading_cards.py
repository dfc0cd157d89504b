"""Trading cards (issue #7) on real parts: the price collector against a local HTTP server in the
API's shape, and the card collection through nowcast, policy, training and monitor with real
workers, beside the CryptoPunks collection.

Named to run after the other integration tests: some of theirs read model versions and decisions
without a collection filter, and they must stay unchanged."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlmodel import select

from fairvalue import card_prices, pipeline
from fairvalue.card_universe import load_configured
from fairvalue.settings import PROJECT_ROOT, get_settings
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import DailyPrice, RejectedSale, TaskRun
from tests.fake_price_api import PriceAPIHandler, serving
from tests.integration.conftest import start_worker, stop_worker
from tests.realparts import no_other_nowcast_pending, wait_for

pytestmark = pytest.mark.integration
CARDS = get_settings().for_collection("cards")
TODAY = date(2025, 7, 20)


class FakePriceAPI(PriceAPIHandler):
    """Answers GET /cards?tcgPlayerId=... like PokemonPriceTracker v2; `script` says, per TCGplayer
    id, what each successive request gets."""

    script: dict[str, list] = {}
    calls: list[tuple[str, str, str]] = []

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        tcg = query.get("tcgPlayerId", [""])[0]
        FakePriceAPI.calls.append((tcg, self.headers.get("Authorization", ""), query.get("days", [""])[0]))
        steps = FakePriceAPI.script.get(tcg, [])
        default = ("json", {"data": [{"priceHistory": {str(TODAY - timedelta(days=1)): 10.0}}]})
        step = steps.pop(0) if len(steps) > 1 else (steps[0] if steps else default)
        kind, payload = step
        if kind == "sleep":  # slower than the client's timeout; the client has gone when we answer
            time.sleep(payload)
            return
        if kind in ("drip", "huge"):  # a valid answer, but sent too slowly or padded past any card's history
            body = json.dumps(payload).encode()
            pad = b" " * (6_000_000 if kind == "huge" else 0)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + len(pad)))
            self.end_headers()
            try:
                if kind == "huge":
                    self.wfile.write(body + pad)
                for i in range(len(body) if kind == "drip" else 0):  # each byte well within one read's timeout
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1.5 / len(body))
            except OSError:  # the client gave up, as it should
                pass
            return
        if kind == "429":
            self.send_response(429)
            self.send_header("Retry-After", str(payload))
            self.end_headers()
            return
        body = (json.dumps(payload) if kind == "json" else payload).encode()
        self.send_response(500 if kind == "500" else 200)
        self.send_header("Content-Type", "application/json")
        if kind == "not-gzip":  # says gzip, is not
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def price_api():
    with serving(FakePriceAPI) as url:
        yield url


@pytest.fixture(scope="module")
def api_cards(database, s3):
    """The card universe as its own collection for the collector test, so its July prices do not
    mix with the fixture timeline the loops test replays."""
    from fairvalue.card_universe import load_universe, read_universe

    universe = read_universe(get_settings().cards_config)
    universe.collection = "cardsapi"
    load_universe(universe)
    return CARDS.for_collection("cardsapi")


@pytest.fixture(scope="module")
def cards_loaded(database, s3):
    first = load_configured(CARDS)
    again = load_configured(CARDS)
    assert (first.new, again.new, again.updated, again.unchanged) == (40, 0, 0, 40)
    return first


def early_prices():
    """The fixture file's prices before 2025-06-20: what the loops test loads, so its cards are valued
    from their last prices of 2025-06-18/19."""
    fixture = pd.read_csv(PROJECT_ROOT / "data" / "cards" / "prices.csv", dtype=str)
    return fixture, fixture[fixture["date"] < "2025-06-20"]


@pytest.fixture(scope="module")
def cards_published(cards_loaded, tmp_path_factory):
    """A cards champion and a published snapshot of the early prices, as the loops test leaves them
    (through its workers); made here in this process when that test did not run (-k) or stopped
    before publishing, so the tests that read them pass alone."""
    from storage.snapshots import published_snapshot

    with session_scope() as session:
        if published_snapshot(session, ensure_collection(session, "cards")) is not None:
            return
    path = tmp_path_factory.mktemp("cards") / "prices.csv"
    early_prices()[1].to_csv(path, index=False)
    card_prices.ingest_prices_file(path, CARDS)  # idempotent: what the loops test stored is unchanged
    pipeline.train(CARDS)  # the first version is champion
    assert pipeline.nowcast(CARDS).published


def history(days: int, base: float) -> dict:
    return {str(TODAY - timedelta(days=k)): round(base + k, 2) for k in range(1, days + 1)}


def stored(card: str) -> dict[str, float]:
    with session_scope() as session:
        coll = ensure_collection(session, "cardsapi")
        rows = session.exec(select(DailyPrice).where(DailyPrice.collection_id == coll.id,
                                                     DailyPrice.item_key == card)).all()
    return {r.day.isoformat(): r.price for r in rows}


def test_collector_retries_rate_limits_and_keeps_bad_answers(api_cards, price_api):
    with session_scope() as session:
        from storage.prices import card_keys

        cards = card_keys(session, ensure_collection(session, "cardsapi"), active_only=True)
    ext = {k: a["external_id"] for k, a in cards.items()}
    keys = sorted(ext)
    ok, limited, slow, broken, fallback, empty, flaky, bad_value, nested, not_gzip, drip, huge = keys[:12]
    FakePriceAPI.calls.clear()
    FakePriceAPI.script = {
        ext[ok]: [("json", {"data": [{"tcgPlayerId": ext[ok], "priceHistory": history(3, 100.0)}]})],
        ext[limited]: [("429", 0), ("429", 0), ("json", {"data": [{"priceHistory": history(2, 50.0)}]})],
        ext[slow]: [("sleep", 1.5)],
        ext[broken]: [("raw", "<html>upstream error</html>")],
        ext[fallback]: [("json", {"data": [{"prices": {"market": 7.5, "lastUpdated": f"{TODAY}T06:00:00Z"}}]})],
        ext[empty]: [("json", {"data": [{"prices": {}}]})],
        ext[flaky]: [("500", "oops"), ("json", {"data": {"priceHistory": history(1, 20.0)}})],
        ext[bad_value]: [("json", {"data": [{"priceHistory": {str(TODAY - timedelta(days=1)): "N/A",
                                                                 str(TODAY - timedelta(days=2)): 9.0}}]})],
        ext[nested]: [("raw", "[" * 100_000)],  # past Python's recursion limit
        ext[not_gzip]: [("not-gzip", "plain text")],
        ext[drip]: [("drip", {"data": [{"priceHistory": history(2, 30.0)}]})],
        ext[huge]: [("huge", {"data": [{"priceHistory": history(2, 40.0)}]})],
    }
    settings = api_cards.model_copy(update={"card_price_api_url": price_api, "card_price_api_key": SecretStr("k-123"),
                                        "card_price_timeout_seconds": 0.5, "card_price_max_attempts": 3,
                                        "card_price_backoff_seconds": 0.01})
    client = card_prices.PriceTrackerClient.from_settings(settings)
    report = card_prices.collect(settings, client=client, days=5, today=TODAY)
    client.close()

    assert report.cards == 40
    assert stored(ok) == {str(TODAY - timedelta(days=k)): 100.0 + k for k in (1, 2, 3)}
    assert stored(limited) == {str(TODAY - timedelta(days=1)): 51.0, str(TODAY - timedelta(days=2)): 52.0}
    assert stored(fallback) == {str(TODAY): 7.5}
    assert stored(flaky) == {str(TODAY - timedelta(days=1)): 21.0}
    assert stored(bad_value) == {str(TODAY - timedelta(days=2)): 9.0}
    assert report.cards_failed[slow] == "timeout" and report.cards_failed[broken] == "malformed_response"
    assert report.cards_failed[empty] == "no_price_in_response"
    # An answer nobody can parse is one card's rejection; the run goes on to the other cards.
    assert report.cards_failed[nested] == report.cards_failed[not_gzip] == "malformed_response"
    # The timeout bounds the whole answer, not each read; a body is refused once it passes MAX_BODY_BYTES.
    assert report.cards_failed[drip] == "timeout" and report.cards_failed[huge] == "malformed_response"
    assert [c for c in FakePriceAPI.calls if c[0] == ext[limited]].__len__() == 3  # two 429s, then the answer
    assert [c for c in FakePriceAPI.calls if c[0] == ext[slow]].__len__() == 3  # every attempt timed out
    assert all(auth == "Bearer k-123" and days == "5" for _, auth, days in FakePriceAPI.calls)
    assert report.prices.reasons == {"timeout": 2, "malformed_response": 4, "no_price_in_response": 1,
                                     "malformed_price": 1}
    with session_scope() as session:
        coll = ensure_collection(session, "cardsapi")
        rows = session.exec(select(RejectedSale).where(RejectedSale.collection_id == coll.id)).all()
    kept = {r.reason: r for r in rows}
    broken_answers = {r.row["card_id"]: r.detail for r in rows if r.reason == "malformed_response"}
    assert "upstream error" in broken_answers[broken]
    assert {r.row["card_id"] for r in rows if r.reason == "timeout"} == {slow, drip}
    assert "not JSON" in broken_answers[nested] and "does not decode" in broken_answers[not_gzip]
    assert broken_answers[huge] == f"body over {card_prices.MAX_BODY_BYTES} bytes"
    assert kept["malformed_price"].row["market_price"] == "N/A"

    # A second run over the same answers stores nothing new.
    FakePriceAPI.script[ext[limited]] = [("json", {"data": [{"priceHistory": history(2, 50.0)}]})]
    FakePriceAPI.script[ext[flaky]] = [("json", {"data": {"priceHistory": history(1, 20.0)}})]
    FakePriceAPI.script[ext[slow]] = [("json", {"data": [{"priceHistory": history(1, 5.0)}]})]
    again = card_prices.collect(settings, client=card_prices.PriceTrackerClient.from_settings(settings),
                                days=5, today=TODAY)
    # ok 3, limited 2, fallback, flaky, bad_value 1 each, and the 28 default cards (nested, not_gzip,
    # drip and huge still answer as before: nothing stored, kept as rejections again).
    assert again.prices.new == 1 and again.prices.changed == 0 and again.prices.unchanged == 3 + 2 + 1 + 1 + 1 + 28
    # Every refusal of the second run (broken, empty, bad_value and the four above) was kept by the first;
    # a failed card's refusal was counted as new on every run before.
    assert again.prices.rejected == again.prices.rejected_kept_before == 7, again.prices
    with pytest.raises(card_prices.PriceAPIError, match="rate_limited"):
        FakePriceAPI.script[ext[ok]] = [("429", 3600)]
        card_prices.PriceTrackerClient.from_settings(settings).card(ext[ok], 5)


def test_cards_run_through_the_loops_beside_the_punks(cards_loaded, worker, tmp_path):
    """Prices from the fixture file; policy (no champion) → a training request → a training worker
    trains and the gates promote → nowcast of the cards; the monitor runs; punks untouched."""
    from storage.snapshots import published_snapshot, read_published
    from tasks.app import app

    fixture, early = early_prices()
    bad = pd.DataFrame([{"date": "2025-06-01", "card_id": "no-such-card", "market_price": "3", "volume": "1"},
                        {"date": "2025-06-01", "card_id": fixture["card_id"].iloc[0], "market_price": "-1",
                         "volume": "1"}])
    path = tmp_path / "prices.csv"
    pd.concat([early, bad]).to_csv(path, index=False)
    report = card_prices.ingest_prices_file(path, CARDS)
    assert report.new >= len(early) - 10 and report.reasons == {"unknown_item": 1, "non_positive_price": 1}
    assert report.rejected_kept_before == 0
    again = card_prices.ingest_prices_file(path, CARDS)
    assert (again.new, again.changed, again.rejected, again.rejected_kept_before) == (0, 0, 2, 2)  # idempotent
    from typer.testing import CliRunner

    from fairvalue.cli import app as cli

    status = CliRunner().invoke(cli, ["status", "--collection", "cards"])  # prices, not sales, are its rows
    assert f"collection cards: 40 items, {report.new} daily prices" in status.output, status.output

    # A punks nowcast an earlier file queued (its webhooks' follow-up) waits for the session's worker,
    # which starts with this test: it would publish in the middle of the test and move the punks' pointer.
    wait_for(no_other_nowcast_pending, timeout=120)
    with session_scope() as session:
        punks = ensure_collection(session, "cryptopunks")
        punk_snapshot = published_snapshot(session, punks).id

    trainer = start_worker("cards-trainer", "training", tmp_path)
    try:
        app.send_task("fairvalue.policy", kwargs={"collection": "cards"})
        deadline = time.time() + 240
        while time.time() < deadline:
            with session_scope() as session:
                cards = ensure_collection(session, "cards")
                snap = published_snapshot(session, cards)
            if snap is not None:
                break
            time.sleep(1)
        assert snap is not None, trainer.log.read_text()[-3000:]
    finally:
        stop_worker(trainer)

    with session_scope() as session:
        cards = ensure_collection(session, "cards")
        values = {v.item_key: v for v in read_published(session, cards)}
        from storage.tables import PromotionDecision

        decision = session.exec(select(PromotionDecision).where(PromotionDecision.collection_id == cards.id)).one()
        assert published_snapshot(session, ensure_collection(session, "cryptopunks")).id == punk_snapshot
    assert decision.decision == "promote" and decision.numbers["contender"]["n"] > 100
    assert len(values) == 40 and all(v.p10 <= v.fair_value <= v.p90 for v in values.values())
    assert {v.last_sale_at.date() for v in values.values()} <= {date(2025, 6, 19), date(2025, 6, 18)}
    card = sorted(values)[0]  # the operator's explanation of a card: its method and window, not drivers
    explained = CliRunner().invoke(cli, ["explain", card, "--collection", "cards"])
    text = " ".join(explained.output.split())
    assert explained.exit_code == 0 and f"card {card}: fair value {values[card].fair_value:.2f}" in text, text
    assert "method: median of the card's last" in text and "daily prices from" in text, text

    sent = app.send_task("fairvalue.monitor", kwargs={"collection": "cards"})
    deadline = time.time() + 60
    run = None
    while time.time() < deadline and run is None:  # this run: other tests' workers run the punks' monitor
        with session_scope() as session:
            run = session.exec(select(TaskRun).where(TaskRun.task_id == sent.id, TaskRun.status == "ok")).first()
        time.sleep(0.5)
    assert run is not None and run.detail["collection"] == "cards"

    # Live error of the card collection is read from its published rows (a forward pair each).
    from fairvalue import lifecycle
    from storage.tables import utcnow

    with session_scope() as session:
        scored = lifecycle.live_scored(session, ensure_collection(session, "cards"), utcnow() - timedelta(hours=1))
    assert len(scored) == 40 and scored["event_id"].str.endswith(("2025-06-19", "2025-06-18")).all()
    assert pipeline.is_loaded(CARDS) and not pipeline.is_loaded(CARDS.for_collection("nope"))


def test_api_and_pages_show_the_cards_beside_the_punks(cards_published, client):
    """Issue #7, must-show 3: one deployment serves both collections, in JSON and on the pages.
    Reads the cards snapshot the loops test above published (or cards_published, run alone)."""
    summary = client.get("/v1/collections/cards").json()
    assert summary["kind"] == "daily_prices" and summary["counts"]["items"] == 40
    # The fixture's prices end on 2025-06-19: a nowcast now values the cards as of the punks' stale-market
    # limit after the end of that day (FAIRVALUE_MARKET_STALE_AFTER_DAYS, 7), so every card's signal reads
    # its last price (under FAIRVALUE_SIGNAL_MAX_AGE_DAYS old then) instead of every card being HOLD.
    assert client.get("/v1/collections/cards/signals").json()["total"] == 40
    with session_scope() as session:
        card_id = session.exec(select(DailyPrice.item_key).where(
            DailyPrice.collection_id == ensure_collection(session, "cards").id).limit(1)).one()
    card = client.get(f"/v1/collections/cards/items/{card_id}").json()
    assert card["snapshot"]["valued_at"] == "2025-06-27T00:00:00Z" and card["signal_basis"] == "last_sale"
    assert card["currency"] == "USD"
    explained = client.get(f"/v1/collections/cards/items/{card_id}/explanation")
    assert explained.status_code == 200 and explained.json()["matches_published"] is True
    assert explained.json()["item_id"] == card_id
    # The explanation's deviation is the one the item's signal read (it reported one where the item had none).
    assert explained.json()["deviation"] == pytest.approx(card["deviation"], abs=1e-4)
    # Every number rounded as every other answer's (fairvalue.answers.rounded), the model's own too.
    figures = [explained.json()[k] for k in ("deviation", "category_index_move_over_window")]
    figures = [v for v in (*figures, *explained.json()["band_quantiles_z"]) if isinstance(v, float)]
    assert figures and all(v == round(v, 6) for v in figures), figures
    # Its prices as stored, in cents: they came back through a log and an exp (798.8100000000003).
    for value in client.get("/v1/collections/cards/valuations?ids=" + ",".join(
            s["item_id"] for s in client.get("/v1/collections/cards/signals?limit=40").json()["signals"])).json()[
            "valuations"]:
        price = client.get(f"/v1/collections/cards/items/{value['item_id']}/explanation").json()["market_price"]
        assert price == round(price, 2), (value["item_id"], price)
    # A window inside one day takes that day's price in, as /market takes the day in.
    hour = "from=2025-05-01T12:00:00Z&to=2025-05-01T13:00:00Z"
    prices = client.get(f"/v1/collections/cards/items/{card_id}/history?{hour}").json()["prices"]
    market_days = [d["day"] for d in client.get(f"/v1/collections/cards/market?{hour}").json()["days"]]
    assert [p["day"] for p in prices] == market_days == ["2025-05-01"]

    perf = client.get("/v1/collections/cards/performance?from=2025-05-01&to=2025-06-19").json()
    assert perf["kind"] == "daily_prices" and perf["model"]["n"] > 1000  # forward replay, card-days
    assert {r["value"] for r in perf["per_category"]} == {"grail", "chase", "meta", "personal"}
    assert {"precision", "recall"} <= set(perf["signals"]["buy"]) and "flip_rate" in perf["signal_stability"]
    # Each replayed training's times in UTC with their Z, as every answer writes them (they were naive).
    assert perf["trainings"][0]["trained_at"] == "2025-05-01T00:00:00Z"
    assert all(t["trained_at"].endswith("Z") and t["data_end"].endswith("Z") and t["data_end"] < t["trained_at"]
               for t in perf["trainings"])
    # A window before a model could have been trained (prices start 2025-01-01, 14 days needed).
    early = client.get("/v1/collections/cards/performance?from=2025-01-05&to=2025-02-01")
    assert early.status_code == 400 and "start on 2025-01-15 at the earliest" in early.json()["error"]
    before = client.get("/v1/collections/cards/performance?to=2025-01-10")  # `from` defaults to the earliest start
    assert before.status_code == 400 and "after the earliest start, 2025-01-15" in before.json()["error"]
    assert client.get("/v1/collections/cryptopunks/performance").json()["collection"] == "cryptopunks"

    html = {"accept": "text/html"}
    for path in ("/c/cards/", f"/c/cards/items/{card_id}", "/c/cards/performance", "/c/cards/models", "/"):
        page = client.get(path, headers=html)
        assert page.status_code == 200, (path, page.text[:300])
    assert "By category and by card" in client.get("/c/cards/performance", headers=html).text
    models_page = client.get("/c/cards/models", headers=html).text  # the cards' baseline, not a floor
    assert "previous price MAPE" in models_page and "floor" not in models_page and ">prices<" in models_page
    # A card's page explains its own value (its window of prices), and charts its daily prices.
    card_page = client.get(f"/c/cards/items/{card_id}", headers=html).text
    assert "prices in the window" in card_page and "daily prices" in card_page and "Floor" not in card_page
    history = client.get(f"/v1/collections/cards/items/{card_id}/history").json()
    assert len(history["prices"]) > 100 and history["sales"] == []
    assert "prices" not in client.get("/v1/collections/cryptopunks/items/7804/history").json()
    # The form shows the last day included, so sending it unchanged asks for the same window.
    window = client.get("/c/cards/performance?from=2025-06-01&to=2025-06-30", headers=html).text
    assert 'name="to" value="2025-06-30"' in window and "to 2025-07-01 (exclusive)" in window
    from fairvalue.card_universe import load_universe, read_universe

    empty = read_universe(get_settings().cards_config)  # a daily collection with cards but no prices yet
    empty.collection = "cardsnoprices"
    load_universe(empty)
    page = client.get("/c/cardsnoprices/performance", headers=html)
    assert page.status_code == 200 and "No prices yet" in page.text


def test_a_training_request_is_checked_against_its_collections_params(cards_loaded, seeded):
    """An operator's overrides are checked for the collection's own kind before anything is
    recorded (the HTTP 422 for the punks is in test_operator_api.py)."""
    from fairvalue import lifecycle

    cards, punks = get_settings().for_collection("cards"), get_settings()

    def check(settings, params):
        with session_scope() as session:
            lifecycle.check_training_params(pipeline.ensure_collection_of(session, settings), settings, params)

    check(cards, {"tune_days": 30, "windows": [7, 14]})
    check(punks, {"max_iter": 300, "band_method": "premium"})
    refused = [
        (cards, {"max_iter": 300}, r"unknown training params \['max_iter'\]"),
        (cards, {"windows": [0]}, r"windows\.0: Input should be greater than or equal to 1"),
        (cards, {"alphas": [0.5, 1.5]}, r"alphas\.1: Input should be less than or equal to 1"),
        (punks, {"tune_days": 30}, r"unknown training params \['tune_days'\]"),
    ]
    for settings, params, reason in refused:
        with pytest.raises(lifecycle.BadTrainingParams, match=reason):
            lifecycle.enqueue_retrain("refused params", params, settings)
    # the list whose item failed is not blamed again for being short once pydantic dropped it
    with pytest.raises(lifecycle.BadTrainingParams) as refused_window:
        check(cards, {"windows": [0]})
    assert str(refused_window.value) == "windows.0: Input should be greater than or equal to 1"


def test_a_card_taken_out_of_the_file_is_kept_but_no_longer_collected(database, s3):
    from dataclasses import replace

    from fairvalue.card_universe import load_universe, read_universe
    from storage.prices import card_keys

    full = replace(read_universe(get_settings().cards_config), collection="cardsgone")
    gone = full.cards[3].id
    without = replace(full, cards=[c for c in full.cards if c.id != gone])

    def collected() -> set[str]:
        with session_scope() as session:
            return set(card_keys(session, ensure_collection(session, "cardsgone"), active_only=True))

    assert load_universe(full).new == 40 and gone in collected()
    report = load_universe(without)
    assert (report.not_in_file, report.deactivated, report.updated) == ([gone], [gone], 0)
    assert collected() == {c.id for c in without.cards}
    with session_scope() as session:  # kept, not deleted
        assert gone in card_keys(session, ensure_collection(session, "cardsgone"))
    again = load_universe(without)
    assert (again.not_in_file, again.deactivated, again.unchanged) == ([gone], [], 39)
    back = load_universe(full)
    assert (back.updated, back.not_in_file) == (1, []) and gone in collected()


@pytest.fixture(scope="module")
def routes_cards(database, s3):
    """The whole fixture file (2025-01-01 .. 07-19) in a collection of its own, so /market and
    /backtest do not wait for the loops test above (they need prices, not a snapshot)."""
    from dataclasses import replace

    from fairvalue.card_universe import load_universe, read_universe

    load_universe(replace(read_universe(get_settings().cards_config), collection="cardsroutes"))
    report = card_prices.ingest_prices_file(PROJECT_ROOT / "data" / "cards" / "prices.csv",
                                            CARDS.for_collection("cardsroutes"))
    assert report.new > 7000 and report.rejected == 0
    prices = pd.read_csv(PROJECT_ROOT / "data" / "cards" / "prices.csv")
    return prices


def test_cards_market_counts_median_and_index_per_day(routes_cards, client):
    C = "/v1/collections/cardsroutes"
    body = client.get(f"{C}/market?from=2025-06-01&to=2025-06-30").json()
    punks = client.get("/v1/collections/cryptopunks/market?from=2021-06-01&to=2021-06-30").json()
    assert set(body) == set(punks) | {"kind"} and body["kind"] == "daily_prices"  # a client reads both
    days = body["days"]
    assert [d["day"] for d in days] == [str(d.date()) for d in pd.date_range("2025-06-01", "2025-06-30")]
    by_day = routes_cards.groupby("date")["market_price"]
    for d in days:
        assert d["n_cards"] == by_day.size()[d["day"]] and 30 <= d["n_cards"] <= 40
        assert d["median_price"] == pytest.approx(by_day.median()[d["day"]], rel=1e-6)
    # The index starts at 100 on the first day of prices and is the same whatever window reads it.
    first = client.get(f"{C}/market?from=2025-01-01&to=2025-01-01").json()["days"]
    assert first == [{"day": "2025-01-01", "n_cards": by_day.size()["2025-01-01"],
                      "median_price": pytest.approx(by_day.median()["2025-01-01"]), "index": 100.0}]
    narrow = client.get(f"{C}/market?from=2025-06-15T08:00&to=2025-06-15T09:00").json()["days"]
    assert narrow == [d for d in days if d["day"] == "2025-06-15"]
    # Default window: the 365 days up to the end of the last priced day, i.e. every day of the file.
    default = client.get(f"{C}/market").json()
    assert default["to"] == "2025-07-20T00:00:00Z" and len(default["days"]) == routes_cards["date"].nunique()
    for query, reason in [("from=2025-07-01&to=2025-06-01", "to must be after from"),
                          # past the last price: named, as the caller gave no `to`
                          ("from=2030-01-01", "from 2030-01-01 is not before the default to, 2025-07-20 "
                                              "(the end of the last day of data); give an earlier from, or a to"),
                          ("from=yesterday", "from must be an ISO date"),
                          ("from=2000-01-01&to=2025-01-01", "at most ~10 years")]:
        refused = client.get(f"{C}/market?{query}")
        assert refused.status_code == 400 and reason in refused.json()["error"], query
    assert client.get("/v1/collections/nosuchcards/market").status_code == 404


def test_cards_summary_counts_prices_not_sales(routes_cards, client):
    """The summary said `sales: 0` and counted refused price rows as `rejected_sales`, with no floor
    and no index, for a market that has prices and an index."""
    summary = client.get("/v1/collections/cardsroutes").json()
    assert summary["kind"] == "daily_prices" and summary["floor"] is None
    assert summary["counts"]["prices"] == len(routes_cards) and summary["counts"]["rejected_prices"] == 0
    assert "sales" not in summary["counts"] and "sales_range" not in summary
    assert summary["prices_range"] == {"first": "2025-01-01", "last": "2025-07-19"}  # days
    last_day = client.get("/v1/collections/cardsroutes/market").json()["days"][-1]
    assert summary["index"]["day"] == last_day["day"] == "2025-07-19"
    assert (summary["index"]["level"], summary["index"]["median_price"], summary["index"]["n_cards"]) == (
        last_day["index"], last_day["median_price"], last_day["n_cards"])
    page = client.get("/c/cardsroutes")
    assert page.status_code == 200 and f"{len(routes_cards):,} daily prices" in page.text
    assert "recorded sales" not in page.text and "e.g. 7804" not in page.text


def test_cards_backtest_holds_the_cheap_cards_against_every_card(routes_cards, client, tmp_path):
    C = "/v1/collections/cardsroutes"
    perf = client.get(f"{C}/performance?from=2025-05-01&to=2025-05-31").json()
    body = client.get(f"{C}/backtest?from=2025-05-01&to=2025-05-31").json()
    assert body["kind"] == "daily_prices" and body["threshold"] == get_settings().buy_below
    # Both windows in UTC times with their Z, as the punks' (/performance gave plain dates).
    assert perf["window"] == body["window"] == {"from": "2025-05-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}
    # The same replayed card-days /performance scores; those without a next day's price are not held.
    assert body["n_rows"] == perf["rows_valued"] == body["n_eligible"] + body["n_filtered"]
    assert set(body["filtered"]) <= {"no_price_next_day"} and body["n_filtered"] < 0.05 * body["n_rows"]
    assert body["buy_all"]["n_trades"] == body["n_eligible"]
    assert 0 < body["strategy"]["n_trades"] <= perf["signals"]["distribution"]["BUY"]
    assert (body["start"], body["end"]) == ("2025-05-02", "2025-06-01")  # each day's return is booked the next day
    for name in ("buy_all", "strategy"):
        curve = body[name]
        assert curve["n_days"] == 31 == len(curve["equity"]) == len(curve["drawdown"])
        assert max(d for _, d in curve["drawdown"]) == pytest.approx(curve["max_drawdown"], abs=1e-5)
        assert all(k in curve for k in ("sharpe", "sortino", "calmar", "total_return", "hit_rate"))
    assert body["buy_all"]["n_days_with_positions"] == 31
    assert client.get(f"{C}/backtest?from=2025-05-01&to=2025-05-31").json() == body  # served from the cache
    # A window inside one day is that day, as /market reads it.
    narrow = client.get(f"{C}/backtest?from=2025-06-15T08:00&to=2025-06-15T09:00").json()
    assert narrow["window"] == {"from": "2025-06-15T00:00:00Z", "to": "2025-06-16T00:00:00Z"}
    assert narrow["n_rows"] == (routes_cards["date"] == "2025-06-15").sum()

    # A window far past the last price costs no more than one ending with it (no weekly refits of nothing).
    late = client.get(f"{C}/backtest?from=2025-07-01&to=2035-01-01").json()
    assert late["n_rows"] == client.get(f"{C}/backtest?from=2025-07-01").json()["n_rows"] > 0
    assert late["end"] == "2025-07-19" and late["buy_all"]["n_days"] == 18

    for query, reason in [("from=2025-06-01&to=2025-05-01", "to must be after from"),
                          ("from=2025-01-05&to=2025-02-01", "start on 2025-01-15 at the earliest"),
                          ("to=2025-01-10", "after the earliest start, 2025-01-15"),
                          ("from=2030-01-01", "from 2030-01-01 is not before the default to, 2025-07-20 "
                                              "(the end of the latest price's day); give an earlier from, or a to"),
                          ("to=not-a-date", "to must be an ISO date")]:
        refused = client.get(f"{C}/backtest?{query}")
        assert refused.status_code == 400 and reason in refused.json()["error"], query

    # A collector that corrects a day it had (same count, same last day) is not answered from the cache.
    row = routes_cards[(routes_cards["date"] == "2025-05-20")].iloc[0]
    corrected = tmp_path / "corrected.csv"
    corrected.write_text(f"date,card_id,market_price,volume\n2025-05-20,{row['card_id']},{row['market_price'] * 3},1\n")
    assert card_prices.ingest_prices_file(corrected, CARDS.for_collection("cardsroutes")).changed == 1
    again = client.get(f"{C}/backtest?from=2025-05-01&to=2025-05-31").json()
    assert again["buy_all"]["total_return"] != body["buy_all"]["total_return"]

    html = {"accept": "text/html"}
    page = client.get("/c/cardsroutes/backtest?from=2025-05-01&to=2025-05-31", headers=html)
    assert page.status_code == 200 and "held one day" in page.text and "resale" not in page.text
    home = client.get("/c/cardsroutes/", headers=html)
    assert home.status_code == 200 and "Median price of the priced cards" in home.text


def test_cards_performance_and_backtest_of_a_window_replay_it_once(routes_cards, client, monkeypatch):
    """Both answers read the same replayed card-days, nearly all of either's time, and each replayed
    them (~3 s of CPU per new 60-day window): the second reads the first's now."""
    from fairvalue import evaluation

    replay, windows = evaluation.replay_daily_rows, []

    def counted(series, start, end, *args, **kwargs):
        windows.append((start, end))
        return replay(series, start, end, *args, **kwargs)

    monkeypatch.setattr(evaluation, "replay_daily_rows", counted)
    C = "/v1/collections/cardsroutes"
    perf = client.get(f"{C}/performance?from=2025-06-02&to=2025-06-29").json()
    body = client.get(f"{C}/backtest?from=2025-06-02&to=2025-06-29").json()
    assert windows == [(pd.Timestamp("2025-06-02"), pd.Timestamp("2025-06-30"))]
    assert body["n_rows"] == perf["rows_valued"] > 0


def test_cards_routes_of_a_collection_without_prices_answer_empty(database, client):
    from dataclasses import replace

    from fairvalue.card_universe import load_universe, read_universe

    load_universe(replace(read_universe(get_settings().cards_config), collection="cardsroutesempty"))
    C = "/v1/collections/cardsroutesempty"
    market = client.get(f"{C}/market")
    assert market.status_code == 200 and market.json()["days"] == []
    backtest = client.get(f"{C}/backtest")
    assert backtest.status_code == 200 and backtest.json()["n_rows"] == 0
    assert backtest.json()["strategy"]["sharpe"] is None
    page = client.get("/c/cardsroutesempty/backtest", headers={"accept": "text/html"})
    assert page.status_code == 200 and "No eligible card-day" in page.text
