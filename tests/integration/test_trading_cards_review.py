"""A user's review of the cards market, on real parts: training after a gap in the prices and on
too few of them, sales sent to the cards, follow-up nowcasts of new prices, cards the published
snapshot does not value, the collector asked to collect a market of sales, stored volumes.

Each test loads the card universe into a collection of its own (cardsrev-*), so it neither sees
nor changes the collections of test_trading_cards.py. Named to run after the other integration
tests, as that file is: it registers model versions and decisions."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue import card_prices, lifecycle
from fairvalue.card_universe import load_universe, read_universe
from fairvalue.cli import app as cli
from fairvalue.settings import PROJECT_ROOT, Settings, get_settings
from storage import requests
from storage.db import session_scope
from storage.tables import ModelVersion, TrainingRequest
from tests.integration.conftest import wait_for
from tests.integration.test_trading_cards import FakePriceAPI, price_api  # noqa: F401  (its fixture)

pytestmark = pytest.mark.integration
runner = CliRunner()
PRICES = PROJECT_ROOT / "data" / "cards" / "prices.csv"


def said(text: str) -> str:
    """On one line (rich wraps at the terminal's width)."""
    return " ".join(text.split())


def cards_collection(slug: str, prices: pd.DataFrame | None, tmp_path: Path) -> Settings:
    """The card universe as collection `slug`, with `prices` (the fixture's columns) ingested."""
    load_universe(replace(read_universe(get_settings().cards_config), collection=slug))
    settings = get_settings().for_collection(slug)
    if prices is not None:
        path = tmp_path / f"{slug}-prices.csv"  # rejections are kept by file name: one per collection
        prices.to_csv(path, index=False)
        assert card_prices.ingest_prices_file(path, settings).rejected == 0
    return settings


def versions_of(slug: str) -> int:
    from storage.ingest import ensure_collection

    with session_scope() as session:
        coll = ensure_collection(session, slug)
        return len(session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id)).all())


# --- 1. training after a gap, and on too few prices ----------------------------------------------

def test_cards_train_after_a_gap_in_the_prices(database, s3, tmp_path):
    """The bundled prices end 2025-07-19; a collector's first run stores one price per card dated
    today. `train` raised "too few priced days after warm-up" with a traceback: it tuned on the
    last 60 calendar days, which held only today."""
    fixture = pd.read_csv(PRICES, dtype=str)
    today = fixture.groupby("card_id").tail(1).assign(date="2026-12-01")
    cards_collection("cardsrev-gap", pd.concat([fixture, today]), tmp_path)
    result = runner.invoke(cli, ["train", "--collection", "cardsrev-gap"])
    assert result.exit_code == 0, result.output
    assert "registered version 1 (champion)" in result.output and versions_of("cardsrev-gap") == 1


def test_too_few_prices_are_refused_in_one_line_and_fail_a_request_at_once(database, s3, tmp_path):
    fixture = pd.read_csv(PRICES, dtype=str)
    settings = cards_collection("cardsrev-few", fixture[fixture["date"] < "2025-01-10"], tmp_path)
    result = runner.invoke(cli, ["train", "--collection", "cardsrev-few"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert said(result.stderr) == "nothing trained: only 9 days of prices; a daily model needs at least 14"
    assert versions_of("cardsrev-few") == 0

    # A training request of the same collection fails for good on its first attempt, with the reason.
    request_id = lifecycle.record_request(settings, f"cardsrev-few:{time.time_ns()}", "too few", {}, {}).request_id
    with pytest.raises(lifecycle.TRAINING_REFUSALS):
        lifecycle.train_request(request_id, "worker-few", settings)
    with session_scope() as session:
        row = session.get(TrainingRequest, request_id)
        assert (row.state, row.attempts) == (requests.FAILED, 1)
        # The gate window is the last 14 priced days: all 9, from the first.
        assert row.error == ("TooFewPrices: before the gate window from 2025-01-01: only 0 days of prices; a "
                             "daily model needs at least 14")


# --- 2. the sales webhook of the cards ---------------------------------------------------------------

def test_the_sales_webhook_of_a_cards_service_refuses_sales_as_the_listings_one_does(client, monkeypatch, tmp_path):
    """Answered 202 and stored a sale the cards never read; the listings webhook answered 409."""
    import json
    from datetime import UTC, datetime

    from api import signing
    from storage.tables import Sale, WebhookDelivery

    cards_collection("cardsrev-hook", None, tmp_path)
    monkeypatch.setattr(get_settings(), "collection", "cardsrev-hook")  # the API's default collection
    event_id = f"cardsrev-sale-{time.time_ns()}"
    sale = {"event_id": event_id, "timestamp": datetime.now(UTC).isoformat(), "item_id": "1", "price": 10.0}
    answers = {}
    for path, payload in (("/v1/webhooks/sales", sale), ("/v1/webhooks/listings", {"listings": [
            {**sale, "event_id": f"{event_id}-ask"}]})):
        body = json.dumps(payload).encode()
        answers[path] = client.post(path, content=body, headers={
            signing.HEADER: signing.sign("test-secret", body), "content-type": "application/json"})
    sales, listings = answers["/v1/webhooks/sales"], answers["/v1/webhooks/listings"]
    assert sales.status_code == listings.status_code == 409, sales.text
    assert sales.json()["outcome"] == listings.json()["outcome"] == "not_taken"
    assert sales.json()["error"].startswith("this service's collection takes no sales now: collection cardsrev-hook "
                                            "is of kind daily_prices: it takes daily prices")
    with session_scope() as session:
        assert session.exec(select(Sale).where(Sale.event_id == event_id)).first() is None
        refused = session.exec(select(WebhookDelivery.outcome).where(
            WebhookDelivery.outcome == "not_taken", WebhookDelivery.reason.contains("takes no sales"))).all()
    assert refused  # recorded with its reason, as every refusal is


# --- 3. new prices ask for a nowcast ------------------------------------------------------------------

def published_days(slug: str) -> set[str]:
    from storage.ingest import ensure_collection
    from storage.snapshots import read_published

    with session_scope() as session:
        return {v.last_sale_at.date().isoformat() for v in read_published(session, ensure_collection(session, slug))
                if v.last_sale_at is not None}


def nowcast_runs(slug: str) -> int:
    from storage.tables import TaskRun

    with session_scope() as session:
        return sum(run.detail.get("collection") == slug for run in session.exec(
            select(TaskRun).where(TaskRun.task_name == "fairvalue.nowcast")).all())


def test_new_prices_ask_for_a_nowcast_as_new_sales_do(worker, monkeypatch, tmp_path):
    """`ingest prices` and `cards collect` stored prices and left them unvalued until the daily
    nowcast; `ingest sales` asks for its follow-up."""
    from fairvalue import pipeline

    fixture = pd.read_csv(PRICES, dtype=str)
    settings = cards_collection("cardsrev-follow", fixture[fixture["date"] < "2025-06-20"], tmp_path)
    pipeline.train(settings)  # the first version is champion
    day = tmp_path / "cardsrev-follow-0620.csv"
    fixture[fixture["date"] == "2025-06-20"].to_csv(day, index=False)
    result = runner.invoke(cli, ["ingest", "prices", str(day), "--collection", "cardsrev-follow"])
    assert result.exit_code == 0, result.output
    assert "follow-up sent: a nowcast is asked for to value the new prices" in said(result.output)
    assert wait_for(lambda: "2025-06-20" in published_days("cardsrev-follow"), timeout=120)  # the worker's nowcast
    again = runner.invoke(cli, ["ingest", "prices", str(day), "--collection", "cardsrev-follow"])
    assert again.exit_code == 0 and "follow-up" not in again.output, again.output  # nothing new: nothing sent


def test_prices_before_the_first_training_ask_for_no_nowcast_and_one_sent_is_skipped(worker, tmp_path):
    """The README's order (`cards load`, `ingest prices`, then `train`): the ingest sent a nowcast
    with no model to value with, and the worker failed it with a traceback. The CLI now says what
    comes first; a nowcast sent anyway (the collector's, beat's) records a skipped run saying so."""
    from storage.tables import TaskRun
    from tasks.app import request_nowcast

    fixture = pd.read_csv(PRICES, dtype=str)
    cards_collection("cardsrev-untrained", fixture[fixture["date"] < "2025-06-20"], tmp_path)
    day = tmp_path / "cardsrev-untrained-0620.csv"
    fixture[fixture["date"] == "2025-06-20"].to_csv(day, index=False)
    result = runner.invoke(cli, ["ingest", "prices", str(day), "--collection", "cardsrev-untrained"])
    assert result.exit_code == 0, result.output
    assert ("no nowcast asked for: cardsrev-untrained has no champion yet; `fairvalue train --collection "
            "cardsrev-untrained` trains one") in said(result.output) and "follow-up sent" not in result.output

    request_nowcast("cardsrev-untrained")

    def finished() -> list[tuple[str, dict]]:
        with session_scope() as session:
            return [(run.status, run.detail) for run in session.exec(
                select(TaskRun).where(TaskRun.task_name == "fairvalue.nowcast", TaskRun.status != "running"))
                if run.detail.get("collection") == "cardsrev-untrained"]

    [(status, detail)] = wait_for(finished, timeout=120)
    assert status == "skipped" and detail["reason"] == ("collection cardsrev-untrained has no champion model: "
                                                        "run `fairvalue train --collection cardsrev-untrained`")


def test_cards_collect_asks_for_a_nowcast_when_a_price_is_new(worker, price_api, monkeypatch, tmp_path):  # noqa: F811
    import json

    from pydantic import SecretStr

    cards_collection("cardsrev-collect", None, tmp_path)
    monkeypatch.setattr(get_settings(), "card_price_api_url", price_api)
    monkeypatch.setattr(get_settings(), "card_price_api_key", SecretStr("k-review"))
    FakePriceAPI.script = {}  # every card: one price, of 2025-07-19
    before = nowcast_runs("cardsrev-collect")
    first = runner.invoke(cli, ["cards", "collect", "--collection", "cardsrev-collect", "--days", "2"])
    assert first.exit_code == 0, first.output
    answer = json.loads(first.stdout)  # stdout stays one JSON answer
    assert answer["prices"]["new"] == 40 and answer["follow_up"] == ("sent: a nowcast is asked for to value the "
                                                                    "new prices")
    wait_for(lambda: nowcast_runs("cardsrev-collect") > before, timeout=120)  # the worker took the request
    again = json.loads(runner.invoke(cli, ["cards", "collect", "--collection", "cardsrev-collect"]).stdout)
    assert again["prices"]["unchanged"] == 40 and again["follow_up"] == "none"


# --- 5. the collector of a market of sales ---------------------------------------------------------

def test_cards_collect_of_a_market_of_sales_is_refused_before_any_call(seeded, price_api, monkeypatch):  # noqa: F811
    """Called the price API once per punk (10,000 calls) and stored their "prices" in the punks'
    market; `ingest prices --collection cryptopunks` refused already."""
    from pydantic import SecretStr

    from storage.ingest import ensure_collection
    from storage.tables import DailyPrice

    monkeypatch.setattr(get_settings(), "card_price_api_url", price_api)
    monkeypatch.setattr(get_settings(), "card_price_api_key", SecretStr("k-review"))
    FakePriceAPI.calls.clear()
    result = runner.invoke(cli, ["cards", "collect", "--collection", "cryptopunks", "--days", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert said(result.stderr) == ("nothing collected: collection cryptopunks is of kind unique_items; daily prices "
                                   "go to a daily_prices collection such as cards")
    assert FakePriceAPI.calls == []
    with session_scope() as session:
        punks = ensure_collection(session, "cryptopunks")
        assert session.exec(select(DailyPrice).where(DailyPrice.collection_id == punks.id)).first() is None


# --- 4. cards the published snapshot does not value ----------------------------------------------------

def test_a_card_the_published_snapshot_does_not_value_is_a_404_saying_why(client, tmp_path):
    """Answered 503 "no published snapshot values this item yet; run a nowcast" on the item, its
    quote and its page, and the bulk read 503 "no published snapshot yet" though one was published."""
    from fairvalue import pipeline

    slug = "cardsrev-unvalued"
    universe = replace(read_universe(get_settings().cards_config), collection=slug)
    inactive, unpriced, short, valued = (c.id for c in universe.cards[:4])
    fixture = pd.read_csv(PRICES, dtype=str)
    fixture = fixture[(fixture["date"] < "2025-06-20") & (fixture["card_id"] != unpriced)]
    fixture = fixture[(fixture["card_id"] != short) | (fixture["date"] >= "2025-06-18")]  # two days: no fair value
    settings = cards_collection(slug, fixture, tmp_path)
    assert load_universe(replace(universe, cards=universe.cards[1:])).deactivated == [inactive]
    pipeline.train(settings)
    snapshot = pipeline.nowcast(settings).snapshot_id
    C = f"/v1/collections/{slug}"

    reasons = {}
    for card in (inactive, unpriced, short):
        # The explanation too: it explained a value the snapshot does not hold (recomputed from the model).
        answers = [client.get(f"{C}/items/{card}"), client.get(f"{C}/items/{card}/quote?price=10"),
                   client.get(f"{C}/items/{card}/explanation")]
        assert [a.status_code for a in answers] == [404, 404, 404], [a.text for a in answers]
        assert answers[0].json()["error"] == answers[1].json()["error"] == answers[2].json()["error"]
        reasons[card] = answers[0].json()["error"]
        page = client.get(f"/c/{slug}/items/{card}", headers={"accept": "text/html"})
        assert page.status_code == 404 and "card " + card in page.text
    assert reasons[inactive] == (f"card {inactive} is not active (active: false in the card universe): it is neither "
                                 f"collected nor valued, and the published snapshot {snapshot} holds no value of it")
    assert reasons[unpriced] == (f"card {unpriced} has no price history yet, so the published snapshot {snapshot} "
                                 "holds no value of it: a card is valued once it has a few days of prices")
    assert reasons[short] == (f"card {short} is not in the published snapshot {snapshot}: its 2 daily price(s) were "
                              "too few for a fair value at that nowcast, or were stored after it")
    assert client.get(f"{C}/items/{valued}").status_code == 200

    # The bulk read answers them as it answers unknown ids, from the published snapshot.
    some = client.get(f"{C}/valuations?ids={inactive},{valued},no-such-card")
    none = client.get(f"{C}/valuations?ids={inactive},{unpriced}")
    assert some.status_code == none.status_code == 200, (some.text, none.text)
    assert [v["item_id"] for v in some.json()["valuations"]] == [valued]
    assert some.json()["not_found"] == [inactive, "no-such-card"]
    assert none.json()["valuations"] == [] and none.json()["not_found"] == [inactive, unpriced]
    assert none.json()["snapshot"]["id"] == some.json()["snapshot"]["id"] == snapshot

    # Nothing published yet is still a 503, whether an id is known or not (no known id answered 200
    # with a null snapshot): a nowcast makes it answer.
    cards_collection("cardsrev-unpublished", None, tmp_path)
    for path in (f"/v1/collections/cardsrev-unpublished/items/{valued}",
                 f"/v1/collections/cardsrev-unpublished/valuations?ids={valued}",
                 "/v1/collections/cardsrev-unpublished/valuations?ids=no-such-card"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.json()["error"] == "no published snapshot yet; run a nowcast"


def test_a_nowcast_that_values_no_card_is_refused_and_the_published_snapshot_stays(database, s3, tmp_path):
    """`nowcast --as-of` a day before any price published a snapshot of 0 items (exit 0), and every
    card read then answered 404 from it: the check for unvalued items counted rows, and a daily
    kind lists only the cards it values."""
    from fairvalue import pipeline
    from storage.snapshots import published_snapshot
    from storage.tables import Collection

    slug = "cardsrev-novalue"
    fixture = pd.read_csv(PRICES, dtype=str)
    settings = cards_collection(slug, fixture[fixture["date"] < "2025-03-01"], tmp_path)
    pipeline.train(settings)
    published = pipeline.nowcast(settings).snapshot_id

    result = runner.invoke(cli, ["nowcast", "--collection", slug, "--as-of", "2024-06-01T00:00:00Z"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert said(result.stderr).startswith("nothing published: no item has a fair value at 2024-06-01"), result.stderr
    with session_scope() as session:
        coll = session.exec(select(Collection).where(Collection.slug == slug)).one()
        assert published_snapshot(session, coll).id == published


def test_drift_of_cards_says_it_is_not_measured_before_asking_for_a_model(database, s3, tmp_path):
    """Before any training it said "has no champion model: run `fairvalue train`" (which trains the
    punks); once trained, that drift is not measured for cards."""
    slug = "cardsrev-drift"
    cards_collection(slug, None, tmp_path)
    result = runner.invoke(cli, ["drift", "--collection", slug])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert said(result.stderr).endswith(f"drift is not measured for daily-priced collections ({slug}) yet")
    nowcast = runner.invoke(cli, ["nowcast", "--collection", slug])
    assert nowcast.exit_code == 1 and said(nowcast.stderr).endswith(
        f"has no champion model: run `fairvalue train --collection {slug}`"), nowcast.stderr
