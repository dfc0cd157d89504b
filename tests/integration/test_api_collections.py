"""Collection-scoped reads: summary, item history and explanation, signals with filters and
cursor pagination, forward performance and backtest on published history, market, decisions."""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, update
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue.cli import app as cli
from models.market_index import INDEX_MIN_SALES
from models.times import HOUR
from storage.db import session_scope
from storage.tables import Collection, NowcastSnapshot, Sale
from tests.builders import pointer_on
from tests.realparts import no_other_nowcast_pending, wait_for

pytestmark = pytest.mark.integration
runner = CliRunner()
C = "/v1/collections/cryptopunks"
PUBLISHED_AT = datetime(2021, 11, 10, 0, 1, tzinfo=UTC)


def unrounded(value, where="") -> list[str]:
    """Where an answer holds a float with more than the 6 decimals every answer rounds to."""
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in unrounded(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in unrounded(v, f"{where}[{i}]")]
    return [f"{where}: {value!r}"] if isinstance(value, float) and value != round(value, 6) else []


@pytest.fixture(scope="module")
def history(seeded):
    """A snapshot valued as of 2021-11-10 and marked published a minute later, as the live loop
    would have left it; later sales are scored against it. (Its model saw later sales: this
    checks the plumbing of forward scoring, not the model's accuracy.)"""
    from fairvalue import pipeline

    result = pipeline.nowcast(as_of=PUBLISHED_AT - timedelta(minutes=1))
    assert not result.published  # a later snapshot is published: the pointer did not move back
    with session_scope() as session:
        session.execute(update(NowcastSnapshot.__table__).where(NowcastSnapshot.id == result.snapshot_id)
                        .values(status="published", published_at=PUBLISHED_AT))
    return result.snapshot_id


@pytest.fixture(scope="module")
def no_nowcast_pending(seeded, broker):
    """A nowcast an earlier file left queued or held would publish over the pointer
    seeded_published moves, in the middle of a test. Nothing in this file asks for one: once is enough."""
    wait_for(no_other_nowcast_pending, timeout=120)


@pytest.fixture
def seeded_published(seeded, no_nowcast_pending):
    """The seeded snapshot as the published one for the test, the pointer put back after: the tests
    taking it assert on the bundled market as that snapshot valued it (its last sales in late 2021,
    no listings). Files run before this one leave snapshots of their own published, valued now after
    sales they stored dated today (tests/integration/test_api_reads.py, test_live_loop.py: a worker's
    follow-up nowcast): those give a signal to those few items only, 7804's sale of today among them."""
    with pointer_on(seeded["nowcast"].snapshot_id):
        yield seeded


def test_summary(client, seeded):
    body = client.get(C).json()
    assert body["collection"] == "cryptopunks" and body["counts"]["items"] == 10_000
    assert body["counts"]["sales"] > 10_000
    assert body["floor"]["value"] > 0
    # The index is the day after the latest sale; other tests ingest a handful of sales dated
    # today, and under INDEX_MIN_SALES in 14 days the index is honestly unknown (None), never 0.
    # Which of the two depends on the files run before this one, so the stored sales say which.
    day = datetime.fromisoformat(body["index"]["day"]).replace(tzinfo=UTC)
    with session_scope() as session:
        recent = session.exec(select(func.count()).select_from(Sale).where(
            Sale.collection_id == select(Collection.id).where(Collection.slug == "cryptopunks").scalar_subquery(),
            Sale.wash_reason.is_(None), Sale.ts >= day - timedelta(days=14), Sale.ts < day)).one()
    level = body["index"]["level"]
    assert (level is not None and level > 0) if recent >= INDEX_MIN_SALES else level is None, (recent, level)
    assert body["snapshot"]["id"] and body["snapshot"]["age_seconds"] >= 0
    assert sum(body["counts"]["signals"].values()) == body["snapshot"]["n_items"]
    assert client.get("/v1/collections/nope").status_code == 404


def test_the_collections_list_names_every_slug_and_the_default(client, seeded):
    body = client.get("/v1/collections").json()
    punks = next(c for c in body["collections"] if c["slug"] == "cryptopunks")
    assert body["default"] == "cryptopunks"
    assert (punks["kind"], punks["currency"], punks["items"]) == ("unique_items", "ETH", 10_000)
    assert punks["snapshot"]["id"] == client.get(C).json()["snapshot"]["id"]
    slugs = [c["slug"] for c in body["collections"]]
    assert slugs == sorted(slugs) and all(client.get(f"/v1/collections/{s}").status_code == 200 for s in slugs)


def test_alias_and_scoped_routes_agree(client, seeded):
    assert client.get("/v1/items/7804").json() == client.get(f"{C}/items/7804").json()
    assert client.get("/v1/models").json() == client.get(f"{C}/models").json()
    missing = client.get("/v1/collections/nope/items/1")
    assert missing.status_code == 404 and "unknown collection" in missing.json()["error"]


def test_item_history_lists_published_values_and_sales(client, history):
    body = client.get(f"{C}/items/7804/history").json()
    times = [p["published_at"] for p in body["published"]]
    assert times == sorted(times) and history in {p["snapshot_id"] for p in body["published"]}
    with session_scope() as session:
        n_sales = len(session.exec(select(Sale.id).where(Sale.item_key == "7804")).all())
    assert len(body["sales"]) == n_sales > 0
    window = client.get(f"{C}/items/7804/history?from=2021-11-01&to=2021-11-30").json()
    assert [p["snapshot_id"] for p in window["published"]] == [history]
    # `truncated` says whether older values were left out, not that the page happens to be full.
    one = f"{C}/items/7804/history?from=2021-11-01&to=2021-11-30&limit=1"
    assert client.get(one).json()["truncated"] is False
    everything = client.get(f"{C}/items/7804/history?limit=5000").json()
    assert everything["truncated"] is False and len(everything["published"]) > 1  # the seed's and `history`
    assert client.get(f"{C}/items/7804/history?limit=1").json()["truncated"] is True
    assert client.get(f"{C}/items/7804/history?from=yesterday").status_code == 400
    assert client.get(f"{C}/items/7804/history?from=2022-01-01&to=2021-01-01").status_code == 400
    assert client.get(f"{C}/items/7804%0A/history").status_code == 400  # "$" would let a final newline through


def test_item_explanation_on_the_collection_route(client, seeded):
    body = client.get(f"{C}/items/7804/explanation?top=3").json()
    assert body["collection"] == "cryptopunks" and 1 <= len(body["drivers"]) <= 3
    assert all(math.isfinite(d["effect"]) for d in body["drivers"])
    # Every number rounded as every other answer's (fairvalue.answers.rounded): the effects came
    # straight from the model (0.12345678901234568).
    assert unrounded(body) == []
    # effect_pct in percent (it was a fraction: "effect": 2.0636, "effect_pct": 6.874 for +687.4 %),
    # and the item page and `fairvalue explain` show the same figures as before. Each is rounded on
    # its own, so they agree to the 6th decimal of the effect (at most 5e-7: 5e-5 x e^effect percent).
    assert all(d["effect_pct"] == pytest.approx(100 * math.expm1(d["effect"]), abs=1e-4 * math.exp(d["effect"]))
               for d in body["drivers"])
    page = client.get("/items/7804").text
    table = runner.invoke(cli, ["explain", "7804", "--top", "3"]).output
    printed = " ".join(re.sub("[\u2500-\u257f]", " ", table).split())  # the table's text, without its lines
    for d in client.get(f"{C}/items/7804/explanation?top=8&comps=8").json()["drivers"]:  # as the page asks
        assert f">{d['effect_pct']:+.1f} %</td>" in page, d
    for d in body["drivers"]:
        assert f"{d['group']} {d['effect_pct']:+.1f}%" in printed, (d, printed)
    # The rows reconcile: the typical value times every row, the rest included, is the fair value.
    rest = math.log(body["fair_value"] / body["typical_value"]) - sum(d["effect"] for d in body["drivers"])
    assert f"the other drivers and interactions {100 * math.expm1(rest):+.1f}%" in printed, printed
    assert client.get("/v1/collections/nope/items/7804/explanation").status_code == 404


def test_a_sale_too_old_to_be_a_market_price_gives_no_signal_and_says_so(client, seeded_published):
    """7804 last sold in March 2021, months before the value (FAIRVALUE_SIGNAL_MAX_AGE_DAYS, 30):
    HOLD whatever its deviation was, no deviation shown, and the page says why."""
    item = client.get(f"{C}/items/7804").json()
    assert item["last_sale"]["timestamp"].startswith("2021-03-11")
    assert (item["signal"], item["signal_basis"], item["deviation"]) == ("HOLD", None, None)
    assert "no recent sale or listing: no signal" in client.get("/items/7804").text
    bulk = client.get(f"{C}/valuations?ids=7804").json()["valuations"][0]
    assert (bulk["signal_basis"], bulk["deviation"]) == (None, None)
    # A price asked now is a market price whatever the last sale's age: the quote judges it.
    assert client.get(f"{C}/items/7804/quote?price={item['fair_value'] * 0.5}").json()["signal"] == "BUY"


def test_signals_filters_and_cursor_pages(client, seeded_published):
    everything = client.get(f"{C}/signals?limit=500").json()
    assert 100 < everything["total"] <= 500  # items with an open ask or a sale in the 30 days before the value
    devs = [abs(s["deviation"]) for s in everything["signals"]]
    assert devs == sorted(devs, reverse=True)
    # Each entry's deviation is that of the price its signal read, and the signal follows from it.
    valued_at = datetime.fromisoformat(everything["snapshot"]["valued_at"].replace("Z", "+00:00"))
    for s in everything["signals"]:
        assert s["signal_basis"] == "last_sale" and s["ask_price"] is None  # the bundled market has no listings
        sold = datetime.fromisoformat(s["last_sale_at"].replace("Z", "+00:00"))
        assert valued_at - sold <= timedelta(days=30)
        # Of the unrounded fair value, which the row holds to 6 significant digits (5e-6 of it), to 6 decimals;
        # never read across a threshold the signal did not cross, nor short of one it did.
        assert s["deviation"] == pytest.approx(s["last_price"] / s["fair_value"] - 1,
                                               abs=5e-6 * s["last_price"] / s["fair_value"] + 1e-6)
        assert s["signal"] == ("BUY" if s["deviation"] <= -0.1 else "SELL" if s["deviation"] >= 0.15 else "HOLD"), s
    # Walking the cursor gives the same ordering as one big page, without repeats.
    seen, cursor = [], None
    for _ in range(3):
        page = client.get(f"{C}/signals?limit=100" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [s["item_id"] for s in page["signals"]]
        cursor = page["next_cursor"]
    assert seen == [s["item_id"] for s in everything["signals"][:300]]
    kinds = {s["type"] for s in everything["signals"]}
    rarest = min(kinds, key=lambda k: sum(s["type"] == k for s in everything["signals"]))
    one_type = client.get(f"{C}/signals?type={rarest.lower()}&limit=500").json()  # matched without case
    assert len(kinds) > 1 and {s["type"] for s in one_type["signals"]} == {rarest}
    assert one_type["total"] == sum(s["type"] == rarest for s in everything["signals"])
    hoodie = client.get(f"{C}/signals?trait=Hoodie&min_deviation=0.2&limit=500").json()
    assert hoodie["total"] < everything["total"]
    assert all(abs(s["deviation"]) >= 0.2 for s in hoodie["signals"])
    summary = client.get(C).json()["counts"]["signals"]
    for signal in ("BUY", "SELL"):
        assert client.get(f"{C}/signals?signal={signal.lower()}").json()["total"] == summary[signal]
    forged = [base64.urlsafe_b64encode(json.dumps(ids).encode()).decode()
              for ids in ([2**63, 0], [2**31, 0], [1, 2**63], [True, 0])]
    for bad in ("signal=MAYBE", "limit=0", "min_deviation=-1", "cursor=xyz", "limit=abc",
                *(f"cursor={c}" for c in forged)):  # past an id's INTEGER the database itself would refuse
        assert client.get(f"{C}/signals?{bad}").status_code == 400, bad


def test_a_choice_is_taken_in_any_case_and_named_as_the_answers_spell_it(client, seeded):
    """?signal= took any case (and "ſell", which .upper() makes SELL) while ?decision= and ?state=
    took only their own spelling: one rule now, every case of the choice's ASCII letters, named as
    the answers spell it; anything else a 400 naming the choices."""
    buy = client.get(f"{C}/signals?signal=BUY&limit=1").json()
    for spelling in ("buy", "Buy", "bUY"):
        body = client.get(f"{C}/signals?signal={spelling}&limit=1").json()
        assert body["filters"]["signal"] == "BUY" and body["total"] == buy["total"], spelling
    assert client.get(f"{C}/decisions?decision=PROMOTE").json() == client.get(f"{C}/decisions?decision=promote").json()
    assert client.get(f"{C}/training-requests?state=Queued").json() == client.get(
        f"{C}/training-requests?state=queued").json()
    for query, choices in (("signals?signal=%C5%BFell", "BUY, SELL, HOLD"),
                           ("signals?signal=BUY%20", "BUY, SELL, HOLD"),
                           ("decisions?decision=promoted", "promote, shadow, reject, rollback"),
                           ("training-requests?state=done", "queued, claimed, training, decided, failed")):
        refused = client.get(f"{C}/{query}")
        assert refused.status_code == 400 and f"must be one of {choices} (in any case), got" in refused.json()["error"]


def test_answers_are_json_whatever_accept_asks(client, seeded):
    """No route negotiates: an Accept naming no JSON (XML only, no */*) gets the JSON answer, not a
    406, as Starlette and FastAPI apps answer (RFC 9110 lets a server disregard Accept); so do errors."""
    xml = {"Accept": "application/xml"}
    for path, status in ((f"{C}/market?from=2021-06-01&to=2021-06-02", 200), (f"{C}/signals?limit=1", 200),
                         (f"{C}/items/7804", 200), ("/v1/items/7804", 200), (f"{C}/items/nosuch", 404),
                         (f"{C}/signals?signal=maybe", 400), ("/v1/nosuch", 404)):
        answer = client.get(path, headers=xml)
        assert (answer.status_code, answer.headers["content-type"]) == (status, "application/json"), path
        assert answer.json() == client.get(path).json(), path


def test_a_cursor_on_a_snapshot_retention_thinned_is_refused_with_why(client, seeded_published):
    """Paging across FAIRVALUE_RETENTION_DAYS: the pinned snapshot lost most rows, and its pages
    would silently miss items."""
    page = client.get(f"{C}/signals?limit=10").json()
    snapshot_id = page["snapshot"]["id"]

    def thinned(at):
        with session_scope() as session:
            session.execute(update(NowcastSnapshot).where(NowcastSnapshot.id == snapshot_id)
                            .values(rows_thinned_at=at))

    thinned(datetime.now(UTC))
    try:
        refused = client.get(f"{C}/signals?limit=10&cursor={page['next_cursor']}")
    finally:
        thinned(None)
    assert refused.status_code == 400 and "RETENTION" in refused.json()["error"]
    assert client.get(f"{C}/signals?limit=10&cursor={page['next_cursor']}").status_code == 200


def test_performance_scores_each_sale_against_the_snapshot_published_before_it(client, history):
    body = client.get(f"{C}/performance?from=2021-11-01&to=2021-12-09").json()  # 5 wash trades early in Dec
    counts = body["counts"]
    with session_scope() as session:
        in_window = select(Sale.ts, Sale.wash_reason).where(Sale.ts >= datetime(2021, 11, 1, tzinfo=UTC),
                                                            Sale.ts < datetime(2021, 12, 10, tzinfo=UTC))
        stored = session.exec(in_window).all()
    sales = [ts for ts, wash in stored if wash is None]
    assert counts["n_sales"] == len(sales)  # the suspected wash trades are counted apart, not scored
    assert sum(counts["wash_trades"].values()) == len(stored) - len(sales) > 0
    assert counts["no_snapshot"] == sum(ts <= PUBLISHED_AT for ts in sales)  # before the publication
    assert counts["n_scored"] == body["model"]["n"] + body["model"]["n_filtered"] > 100
    points = body["points"]
    assert not body["points_truncated"] and len(points) == counts["n_scored"]
    assert {p["snapshot_id"] for p in points} == {history}
    assert min(p["timestamp"] for p in points) > PUBLISHED_AT.isoformat().replace("+00:00", "Z")
    mape = sum(abs(p["fair_value"] - p["price"]) / p["price"] for p in points) / len(points)
    assert body["model"]["mape"] == pytest.approx(mape, rel=1e-4)
    by = {(s["segment"], s["value"]): s for s in body["segments"]}
    assert sum(s["n"] for (seg, _), s in by.items() if seg == "type") == body["model"]["n"]
    assert sum(s["n"] for (seg, _), s in by.items() if seg == "gender") == body["model"]["n"]  # every punk has one
    assert ("gender", "Female") in by and ("skin_tone", "Albino") in by
    assert sum(p["n"] for p in body["series"]) == body["model"]["n"]
    assert body["previous_day_floor"]["n"] == body["model"]["n"]
    assert client.get(f"{C}/performance?from=2021-12-01&to=2021-11-01").status_code == 400


def test_a_from_past_the_data_names_the_to_it_defaulted_to(client, seeded):
    """With only `from` given, `to` defaults to the end of the data; a `from` past it was refused
    as "to must be after from", about a `to` nobody gave. The refusal names the default."""
    from sqlalchemy import func

    from fairvalue.answers import iso

    with session_scope() as session:
        latest = session.exec(select(func.max(Sale.ts))).one()
    default_to = iso(latest + timedelta(seconds=1))
    for read in ("performance", "backtest"):
        refused = client.get(f"{C}/{read}?from=2200-01-02")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == (f"from 2200-01-02 is not before the default to, {default_to} "
                                           "(a second after the latest sale); give an earlier from, or a to")
        # A `to` the caller gave before `from` is still said so.
        given = client.get(f"{C}/{read}?from=2021-12-01&to=2021-11-01")
        assert given.status_code == 400 and given.json()["error"] == "to must be after from"
    market = client.get(f"{C}/market?from=2030-01-01")
    assert market.status_code == 400
    assert market.json()["error"].startswith("from 2030-01-01 is not before the default to, 20")
    assert "(the end of the last day of data); give an earlier from, or a to" in market.json()["error"]


def test_a_window_ending_by_the_epoch_is_refused_by_every_windowed_read(client, seeded):
    """`to=1969-12-31` counts that whole day, so it was made `to=1970-01-01` before the years were
    checked: every windowed read answered 200, an empty window before the epoch. The date as given
    is checked, and a window must end after the earliest time a read takes (nothing is before it);
    a `from` left to its default starts no earlier."""
    earliest = "to must be after 1970-01-01T00:00:00Z, the earliest time a read takes"
    for read in ("performance", "backtest", "market", "items/7804/history"):
        for query, reason in (("to=1969-12-31", "to must be between the years 1970 and 2200"),
                              ("from=1969-12-31&to=1969-12-31", "from must be between the years 1970 and 2200"),
                              ("to=1970-01-01T00:00:00Z", earliest), ("to=1970-01-01T01:00:00%2B01:00", earliest)):
            answer = client.get(f"{C}/{read}?{query}")
            assert answer.status_code == 400 and answer.json()["error"] == reason, (read, query, answer.text)
    for read in ("performance", "backtest"):  # the first day of the range is read whole
        window = client.get(f"{C}/{read}?to=1970-01-01").json()["window"]
        assert window == {"from": "1970-01-01T00:00:00Z", "to": "1970-01-02T00:00:00Z"}, read
    market = client.get(f"{C}/market?to=1970-01-01").json()
    assert (market["from"], market["to"], market["days"]) == ("1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z", [])
    history = client.get(f"{C}/items/7804/history?to=1970-01-01").json()
    assert history["published"] == history["sales"] == []


def test_performance_judges_the_signals_of_sales_and_asks_forward(client, history):
    """Sale signals as replay reports them; asks valued before they were listed, judged by
    whether they were taken (models/ask_kpis.py)."""
    from storage.tables import Listing, NowcastRow

    with session_scope() as session:
        coll_id = session.exec(select(NowcastSnapshot.collection_id).where(NowcastSnapshot.id == history)).one()
        sold = session.exec(select(Sale.item_key, Sale.ts, Sale.price, Sale.time_precision).where(
            Sale.collection_id == coll_id, Sale.wash_reason.is_(None),
            Sale.ts > PUBLISHED_AT + timedelta(hours=3), Sale.ts < datetime(2021, 12, 1, tzinfo=UTC))
            .order_by(Sale.ts)).first()
        keys = sorted({k for k in session.exec(select(NowcastRow.item_key).where(
            NowcastRow.snapshot_id == history).limit(500)).all()} - {sold[0]})
        unsold = [k for k in keys if not session.exec(select(Sale.id).where(
            Sale.collection_id == coll_id, Sale.item_key == k, Sale.ts > datetime(2021, 11, 1, tzinfo=UTC),
            Sale.ts < datetime(2022, 1, 15, tzinfo=UTC))).first()][:3]
        fair = dict(session.exec(select(NowcastRow.item_key, NowcastRow.fair_value).where(
            NowcastRow.snapshot_id == history, NowcastRow.item_key.in_([sold[0], *unsold]))).all())
        taken_at = sold[1] if sold[1].tzinfo else sold[1].replace(tzinfo=UTC)
        day = timedelta(days=1)
        listed = [  # (event, item, ts, price, expires_at); each ends within days, so no later nowcast sees it
            ("ask-taken", sold[0], taken_at - timedelta(hours=2), sold[2], None),
            ("ask-cheap", unsold[0], PUBLISHED_AT + day, 0.5 * fair[unsold[0]], PUBLISHED_AT + 2 * day),
            ("ask-dear", unsold[1], PUBLISHED_AT + day, 2 * fair[unsold[1]], None),
            ("ask-dear-withdrawn", unsold[1], PUBLISHED_AT + 3 * day, None, None),
            ("ask-before-any-value", unsold[2], datetime(2021, 11, 5, tzinfo=UTC), 1.0,
             datetime(2021, 11, 6, tzinfo=UTC)),
        ]
        session.add_all([Listing(collection_id=coll_id, event_id=f"perf-{e}", item_key=k, ts=ts, price=p,
                                 expires_at=x, source="test", content_hash=e) for e, k, ts, p, x in listed])
    try:
        body = client.get(f"{C}/performance?from=2021-11-01&to=2021-12-09").json()
        page = client.get("/c/cryptopunks/performance?from=2021-11-01&to=2021-12-09",
                          headers={"Accept": "text/html"}).text
    finally:
        with session_scope() as session:
            for row in session.exec(select(Listing).where(Listing.event_id.like("perf-ask-%"))).all():
                session.delete(row)

    signals = body["signals"]
    assert signals["n_events"] == body["model"]["n"] > 100
    buy = sum(p["price"] <= p["fair_value"] * 0.9 + 1e-9 for p in body["points"])
    sell = sum(p["price"] >= p["fair_value"] * 1.15 - 1e-9 for p in body["points"])
    assert signals["distribution"] == {"BUY": buy, "SELL": sell, "HOLD": signals["n_events"] - buy - sell}
    assert 0 < signals["n_known"] < signals["n_events"]  # resales within 30 days are the minority
    assert signals["coverage"] == pytest.approx(signals["n_known"] / signals["n_events"], rel=1e-5)

    asks = body["ask_signals"]
    assert asks["counts"] == {"n_asks": 4, "n_valued": 3, "no_snapshot": 1, "no_row": 0}
    complete_from = datetime.fromisoformat(asks["complete_from"].replace("Z", "+00:00"))  # retention may drop older
    assert abs(complete_from - (datetime.now(UTC) - timedelta(days=90))) < timedelta(hours=1)
    taken_signal = "BUY" if sold[2] <= 0.9 * fair[sold[0]] else "HOLD"
    expected = {"BUY": {"ended": 1}, "HOLD": {"ended": 1}}
    expected[taken_signal]["taken"] = 1
    for signal, outcomes in asks["outcomes_by_signal"].items():
        assert {o: n for o, n in outcomes.items() if n} == expected[signal]
    assert asks["n_known"] == 3 and asks["base_rate_taken"] == pytest.approx(1 / 3, rel=1e-5)
    assert asks["buy_precision"] == pytest.approx(0.5 if taken_signal == "BUY" else 0.0)
    # Listed 2 hours before the sale, taken when the sale may have come at the latest: its time,
    # or its hour's end for one known only to the hour (the bundled sales' minutes are not real).
    assert sold[3] == HOUR  # as the bundled market's are
    sold_by = taken_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert asks["median_hours_to_taken"][taken_signal] == pytest.approx((sold_by - taken_at) / timedelta(hours=1) + 2)
    text = " ".join(page.split())
    assert "Signals at sales" in text and "BUYs at asks" in text and "Base rate over every settled ask: 33.3 %" in text


def test_backtest_on_the_same_forward_pairs(client, history):
    perf = client.get(f"{C}/performance?from=2021-11-01&to=2021-11-30").json()
    body = client.get(f"{C}/backtest?from=2021-11-01&to=2021-11-30").json()
    assert body["n_rows"] == perf["counts"]["n_scored"]
    assert 0 < body["strategy"]["n_trades"] < body["buy_all"]["n_trades"] <= body["n_eligible"]
    assert body["below_market"]["n_trades"] <= body["buy_all"]["n_trades"]  # the model-free baseline
    for name in ("buy_all", "strategy", "below_market"):
        curve = body[name]
        assert len(curve["equity"]) == len(curve["drawdown"]) == curve["n_days"]
        assert max(d for _, d in curve["drawdown"]) == pytest.approx(curve["max_drawdown"], abs=1e-5)
    assert client.get(f"{C}/backtest?from=2021-11-01&to=2021-11-30").json() == body  # served from the cache


def test_the_backtest_never_trades_at_a_suspected_wash_trade(client, history):
    """Exits and the index come from clean sales, as the scored sales do (docs/backtest.md)."""
    import pandas as pd

    from fairvalue.reads import collection_row
    from fairvalue.settings import get_settings
    from models.backtest import backtest
    from models.market_index import daily_index
    from models.times import naive_utc

    settings = get_settings()
    perf = client.get(f"{C}/performance?from=2021-11-01&to=2021-12-09").json()
    body = client.get(f"{C}/backtest?from=2021-11-01&to=2021-12-09").json()
    predictions = pd.DataFrame(perf["points"]).rename(columns={"item_key": "item_id"})
    predictions["timestamp"] = naive_utc(predictions["timestamp"])
    # The sales the API reads: its collection's, from 14 days before the window to the horizon after
    # it (other tests of this session store sales of today, which would stretch the series).
    horizon_end = datetime(2021, 12, 10, tzinfo=UTC) + timedelta(days=settings.backtest_horizon_days)
    with session_scope() as session:
        coll = collection_row(session, "cryptopunks")
        rows = session.exec(select(Sale.ts, Sale.item_key, Sale.price, Sale.wash_reason).where(
            Sale.collection_id == coll.id, Sale.ts >= datetime(2021, 10, 18, tzinfo=UTC), Sale.ts < horizon_end)
            .order_by(Sale.ts, Sale.id)).all()
    every = pd.DataFrame(rows, columns=["ts", "item_key", "price", "wash_reason"])
    every["ts"] = naive_utc(every["ts"])
    assert every["wash_reason"].notna().sum() > 0
    clean = every[every["wash_reason"].isna()].drop(columns="wash_reason").reset_index(drop=True)

    def sharpe(sales: pd.DataFrame) -> float:
        result = backtest(predictions, sales, daily_index(sales), threshold=settings.buy_below,
                          horizon_days=settings.backtest_horizon_days).as_dict()
        return result["buy_all"]["sharpe"]

    assert body["buy_all"]["sharpe"] == pytest.approx(sharpe(clean), rel=1e-6)
    assert sharpe(clean) != pytest.approx(sharpe(every.drop(columns="wash_reason")), rel=1e-6)


def test_the_times_of_versions_and_decisions_are_utc_with_their_z(client, seeded):
    """metrics.holdout_start of /models and numbers.window of /decisions (also kept as a gated
    version's metrics.gate_evaluation) were naive text ("2021-12-01T23:12:36") where every other
    time has its Z. New ones are written with it, and those stored before are served with it."""
    from fairvalue import lifecycle
    from fairvalue.settings import get_settings
    from storage.registry import CHAMPION, get_alias
    from storage.tables import Collection, ModelVersion, PromotionDecision

    # Versions a training request made (earlier tests in the session) have a gate window instead.
    starts = [v["metrics"]["holdout_start"] for v in client.get(f"{C}/models").json()["versions"]
              if "holdout_start" in v["metrics"]]
    assert starts and all(start.endswith("Z") for start in starts)
    outcome = lifecycle.train_and_gate(get_settings(), {"max_iter": 5, "band_max_iter": 3, "linear_weight": 0.0})
    window = outcome.numbers["window"]
    assert window["from"].endswith("Z") and window["to"].endswith("Z") and window["from"] < window["to"]

    with session_scope() as session:  # as stored before: naive text
        coll = session.exec(select(Collection).where(Collection.slug == "cryptopunks")).one()
        champion = get_alias(session, coll, CHAMPION)
        version = session.get(ModelVersion, champion.id)
        stored_metrics = dict(version.metrics)
        version.metrics = {**stored_metrics, "holdout_start": "2021-12-01T23:12:36",
                           "gate_evaluation": {"window": {"from": "2021-12-17T23:12:36", "to": "2021-12-31T23:12:36"}}}
        session.add(version)
        old = PromotionDecision(collection_id=coll.id, decision="shadow", decided_by="gates", reason="stored before",
                                numbers={"window": {"from": "2021-12-17T23:12:36", "to": "2021-12-31T23:12:36",
                                                    "n_sales": 189}})
        session.add(old)
        session.flush()
        old_id = old.id
    try:
        served = next(v for v in client.get(f"{C}/models").json()["versions"] if v["version"] == champion.version)
        assert served["metrics"]["holdout_start"] == "2021-12-01T23:12:36Z"
        assert served["metrics"]["gate_evaluation"]["window"] == {"from": "2021-12-17T23:12:36Z",
                                                                  "to": "2021-12-31T23:12:36Z"}
        decision = next(d for d in client.get(f"{C}/decisions?limit=500").json()["decisions"] if d["id"] == old_id)
        assert decision["numbers"]["window"] == {"from": "2021-12-17T23:12:36Z", "to": "2021-12-31T23:12:36Z",
                                                 "n_sales": 189}
    finally:
        with session_scope() as session:
            version = session.get(ModelVersion, champion.id)
            version.metrics = stored_metrics
            session.add(version)
            session.delete(session.get(PromotionDecision, old_id))


def test_market_and_decisions(client, seeded):
    body = client.get(f"{C}/market?from=2021-06-01&to=2021-06-30").json()
    days = [d["day"] for d in body["days"]]
    assert days == sorted(days) and days[0] == "2021-06-01" and days[-1] == "2021-06-30"
    # A bare date as `to` counts the whole day, as on the pages; a date-time is where the window ends.
    until_midnight = client.get(f"{C}/market?from=2021-06-01&to=2021-07-01T00:00:00Z").json()
    assert until_midnight["days"] == body["days"]
    assert client.get(f"{C}/market?from=2021-06-01&to=2021-07-01").json()["days"][-1]["day"] == "2021-07-01"
    assert all(d["floor"] > 0 and d["eth_usd"] > 0 and d["index"] > 0 for d in body["days"])
    hour = client.get(f"{C}/market?from=2021-06-01T12:00&to=2021-06-01T13:00").json()["days"]
    assert hour == body["days"][:1]  # a window inside one day shows that day, floor and all
    # A thin day's index reads the 14 days before it whatever the hour `from` names (at 18:00 it
    # missed that morning's sales: 2019-03-08 read 0.323 against 0.33).
    evening = client.get(f"{C}/market?from=2019-03-08T18:00&to=2019-03-09").json()["days"][0]
    assert evening == client.get(f"{C}/market?from=2019-03-08&to=2019-03-09").json()["days"][0]
    decisions = client.get(f"{C}/decisions?limit=1").json()
    assert decisions["limit"] == 1 and len(decisions["decisions"]) <= 1
    assert client.get(f"{C}/decisions?offset=-1").status_code == 400
    assert "training_requests" in client.get(f"{C}/training-requests?state=queued").json()
    # A filter value that names nothing is refused, not answered with an empty list.
    for bad in ("decisions?decision=bogus", "training-requests?state=bogus"):
        refused = client.get(f"{C}/{bad}")
        assert refused.status_code == 400 and "must be one of" in refused.json()["error"], bad
    # So is a window that ends before it starts once the default end (the last market day) is filled in.
    assert client.get(f"{C}/market?from=2030-01-01").status_code == 400
