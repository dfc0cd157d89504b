"""The BUYs given to asks, judged by whether the asks were taken (models/ask_kpis.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.ask_kpis import ENDED, PENDING, SOLD_BELOW_ASK, STOOD, TAKEN, ask_signal_kpis

T0 = pd.Timestamp("2021-06-01")


def at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def ask(event_id: str, item: str, hours: float, price: float, fair: float, source: str = "larva",
        expires: pd.Timestamp | None = None) -> dict:
    return {"event_id": event_id, "item_id": item, "source": source, "timestamp": at(hours), "price": price,
            "fair_value": fair, "expires_at": expires}


ASKS = pd.DataFrame([
    ask("a-taken", "1", 0, 80, 100),                     # BUY, sold at the ask 5 h later
    ask("b-below", "2", 0, 95, 100),                     # HOLD, the item went for 90 elsewhere
    ask("c-replaced", "3", 0, 85, 100),                  # BUY, repriced after 2 days by its source
    ask("d-stood", "4", 0, 120, 100),                    # HOLD, unsold through the horizon
    ask("e-expired", "5", 0, 70, 100, expires=at(24)),   # BUY, expired after a day
    ask("f-pending", "6", 24 * 25, 88, 100),             # BUY, its horizon not over by as_of
    ask("g-fee", "7", 0, 80, 100),                       # BUY, taken at 79.7: within the tolerance
    ask("h-cheaper", "8", 0, 80, 100),                   # BUY, sold at 79: below the ask
    ask("i-novalue", "9", 0, 80, math.nan),              # filtered: no fair value
])
LISTINGS = pd.DataFrame({
    "event_id": ["c-replaced", "c-new-price", "d-elsewhere", "a-taken"],
    "item_key": ["3", "3", "4", "1"],
    "source": ["larva", "larva", "opensea", "larva"],
    "ts": [at(0), at(48), at(10), at(0)],  # item 4's event comes from another source: it ends nothing
})
SALES = pd.DataFrame({
    "item_key": ["1", "2", "4", "7", "8", "3"],
    "ts": [at(5), at(30), at(24 * 31), at(1), at(2), at(49)],
    "price": [80, 90, 130, 79.7, 79, 85],
})
AS_OF = at(24 * 40)


@pytest.fixture(scope="module")
def kpis():
    return ask_signal_kpis(ASKS, LISTINGS, SALES, AS_OF, horizon_days=30, buy_below=0.10)


def test_each_ask_gets_the_outcome_its_item_and_source_decide(kpis):
    out = kpis.outcomes.set_index("event_id")
    assert out["outcome"].to_dict() == {
        "a-taken": TAKEN, "b-below": SOLD_BELOW_ASK, "c-replaced": ENDED, "d-stood": STOOD, "e-expired": ENDED,
        "f-pending": PENDING, "g-fee": TAKEN, "h-cheaper": SOLD_BELOW_ASK}
    assert out["signal"].to_dict() == {
        "a-taken": "BUY", "b-below": "HOLD", "c-replaced": "BUY", "d-stood": "HOLD", "e-expired": "BUY",
        "f-pending": "BUY", "g-fee": "BUY", "h-cheaper": "BUY"}
    assert out.loc["a-taken", "hours_to_taken"] == 5 and out.loc["g-fee", "hours_to_taken"] == 1
    assert np.isnan(out.loc["b-below", "hours_to_taken"])
    # The repriced ask ended at its source's next event: the sale an hour later is no fill of it.
    assert out.loc["c-replaced", "ends_at"] == at(48)
    assert out.loc["e-expired", "ends_at"] == at(24)
    assert out.loc["d-stood", "ends_at"] == at(24 * 30)


def test_precision_recall_and_base_rate_by_hand(kpis):
    assert (kpis.n_rows, kpis.n_events, kpis.filtered) == (9, 8, {"fair_value_not_finite_positive": 1})
    assert (kpis.n_known, kpis.n_pending) == (7, 1)
    assert kpis.distribution == {"BUY": 6, "HOLD": 2}
    # BUY known: a, c, e, g, h -> taken a, g: 2 / 5. All known: 7, taken 2.
    assert kpis.buy_precision == pytest.approx(2 / 5)
    assert kpis.base_rate_taken == pytest.approx(2 / 7)
    assert kpis.lift == pytest.approx((2 / 5) / (2 / 7))
    assert kpis.buy_recall == 1.0  # both taken asks were BUYs
    assert kpis.taken_rate_by_signal == {"BUY": pytest.approx(2 / 5), "HOLD": 0.0}
    assert kpis.outcomes_by_signal["BUY"] == {TAKEN: 2, SOLD_BELOW_ASK: 1, ENDED: 2, STOOD: 0, PENDING: 1}
    assert kpis.outcomes_by_signal["HOLD"] == {TAKEN: 0, SOLD_BELOW_ASK: 1, ENDED: 0, STOOD: 1, PENDING: 0}
    assert kpis.median_hours_to_taken["BUY"] == 3.0
    as_dict = kpis.as_dict()
    assert as_dict["median_hours_to_taken"]["HOLD"] is None and "outcomes" not in as_dict


def test_an_ask_becomes_known_when_its_end_has_passed():
    early = ask_signal_kpis(ASKS, LISTINGS, SALES, at(24 * 29), horizon_days=30)
    out = early.outcomes.set_index("event_id")["outcome"]
    assert out["d-stood"] == PENDING  # 29 days in: it may still be taken
    assert out["c-replaced"] == ENDED and out["a-taken"] == TAKEN  # settled before as_of


def test_no_asks_gives_empty_rates():
    empty = ask_signal_kpis(ASKS.iloc[:0], LISTINGS.iloc[:0], SALES.iloc[:0], AS_OF)
    assert empty.n_events == 0 and math.isnan(empty.buy_precision) and math.isnan(empty.lift)
    assert empty.as_dict()["base_rate_taken"] is None


def test_a_sale_at_the_expiry_is_too_late_and_one_at_the_next_event_still_meets_the_ask():
    """As open_asks reads the book: expired once expires_at <= t; the older event is the latest
    until a later one's instant has passed."""
    asks = pd.DataFrame([ask("expiring", "1", 0, 80, 100, expires=at(10)), ask("repriced", "2", 0, 80, 100)])
    listings = pd.DataFrame({"event_id": ["new-price"], "item_key": ["2"], "source": ["larva"], "ts": [at(10)]})
    sales = pd.DataFrame({"item_key": ["1", "2"], "ts": [at(10), at(10)], "price": [80, 80]})
    out = ask_signal_kpis(asks, listings, sales, AS_OF).outcomes.set_index("event_id")["outcome"]
    assert out.to_dict() == {"expiring": ENDED, "repriced": TAKEN}


def book_at(listings: pd.DataFrame, sales: pd.DataFrame, hours: float) -> dict[str, float]:
    """The ask open_asks reads for each item of `listings` at `hours`, from the same events and sales."""
    from models.listings import listing_history, open_asks

    events = listings.assign(expires_at=pd.NaT).astype({"expires_at": "datetime64[ns]"})
    items = np.array(sorted(set(listings["item_key"])), dtype=object)
    price, _ = open_asks(listing_history(events, sales), items, at(hours))
    return dict(zip(items, price.tolist(), strict=True))


def test_of_one_instant_only_the_event_open_asks_keeps_is_judged():
    """Two events of one item and source at one instant: the last given is the offer from then on
    (open_asks), so the earlier one never stood and is counted as filtered, not judged."""
    asks = pd.DataFrame([ask("first", "1", 0, 80, 100), ask("second", "1", 0, 90, 100),
                         ask("withdrawn", "2", 0, 80, 100), ask("kept", "3", 0, 80, 100),
                         ask("elsewhere", "1", 0, 95, 100, source="opensea")])
    listings = pd.DataFrame([  # in the order given: item 3's withdrawal comes before its ask
        ("first", "1", "larva", at(0), 80), ("second", "1", "larva", at(0), 90),
        ("withdrawn", "2", "larva", at(0), 80), ("w2", "2", "larva", at(0), math.nan),
        ("w3", "3", "larva", at(0), math.nan), ("kept", "3", "larva", at(0), 80),
        ("elsewhere", "1", "opensea", at(0), 95)], columns=["event_id", "item_key", "source", "ts", "price"])
    sales = pd.DataFrame({"item_key": ["1", "3", "2"], "ts": [at(5), at(6), at(7)], "price": [85, 80, 80]})
    kpis = ask_signal_kpis(asks, listings, sales, AS_OF)
    out = kpis.outcomes.set_index("event_id")["outcome"]
    # 85 is under both asks item 1 stood at (90 x 0.995 = 89.55, 95 x 0.995); the 80 it would take was replaced.
    assert out.to_dict() == {"second": SOLD_BELOW_ASK, "kept": TAKEN, "elsewhere": SOLD_BELOW_ASK}
    assert (kpis.n_rows, kpis.n_events, kpis.n_filtered) == (5, 3, 2)
    assert kpis.filtered == {"replaced_at_its_instant": 2}
    assert book_at(listings, sales.iloc[:0], 1) == {"1": 90.0, "2": pytest.approx(math.nan, nan_ok=True), "3": 80.0}


def test_a_sale_at_the_asks_instant_is_its_fill_as_it_ends_it_in_open_asks():
    """A sale that may have come at or after an ask's instant ends it in open_asks (a sale known
    only to the hour at its hour's end); the same sale judges it: stamped with the ask's instant,
    it is most likely the ask's purchase."""
    asks = pd.DataFrame([ask("same-instant", "1", 0, 80, 100), ask("same-hour", "2", 0.5, 80, 100),
                         ask("sold-before", "3", 0, 80, 100)])
    listings = pd.DataFrame({"event_id": ["same-instant", "same-hour", "sold-before"], "item_key": ["1", "2", "3"],
                             "source": "larva", "ts": [at(0), at(0.5), at(0)], "price": [80.0, 80.0, 80.0]})
    sales = pd.DataFrame({
        "item_key": ["1", "1", "2", "3"],
        "ts": [at(0), at(5), at(10 / 60), at(0) - pd.Timedelta(seconds=1)],  # item 2's: known only to 00:00-01:00
        "price": [80, 70, 80, 80], "hour_precision": [False, False, True, False]})
    out = ask_signal_kpis(asks, listings, sales, AS_OF).outcomes.set_index("event_id")
    assert out["outcome"].to_dict() == {"same-instant": TAKEN, "same-hour": TAKEN, "sold-before": STOOD}
    assert out.loc["same-instant", "hours_to_taken"] == 0 and out.loc["same-instant", "sale_price"] == 80
    assert out.loc["same-hour", "sale_ts"] == at(1) and out.loc["same-hour", "hours_to_taken"] == 0.5
    # open_asks, an hour later, reads the two taken ones as ended and the other as open.
    assert book_at(listings, sales, 2) == {"1": pytest.approx(math.nan, nan_ok=True),
                                           "2": pytest.approx(math.nan, nan_ok=True), "3": 80.0}
