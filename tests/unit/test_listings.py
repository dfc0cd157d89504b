"""Listings: which rows are refused and why, the ask open at a moment, the signal that reads it,
and the write path's idempotence (on SQLite; tests/integration/test_listings.py runs it signed,
on PostgreSQL, through a nowcast)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from models.listings import ListingBook, ListingReason, latest_moment, open_asks, validate_listing, validate_listings
from models.validation import Reason, Rejection
from storage.listings import ingest_listings
from storage.market import load_listings
from storage.tables import Listing, RejectedListing, WebhookDelivery
from storage.webhook_batch import WebhookCall
from storage.webhook_calls import ingest_listing_call

NOW = datetime(2024, 1, 10, tzinfo=UTC)
KNOWN = {"1", "2"}


def listing(event_id="l1", item="1", price=90.0, ts="2024-01-05T10:00:00Z", **extra) -> dict:
    return {"event_id": event_id, "item_id": item, "price": price, "timestamp": ts, **extra}


def reason_of(row: dict) -> str:
    outcome = validate_listing(row, KNOWN, NOW, date(2017, 6, 22))
    return outcome.reason if isinstance(outcome, Rejection) else "clean"


@pytest.mark.parametrize("row, reason", [
    (listing(), "clean"),
    (listing(price=None), "clean"),  # a withdrawal
    (listing(expires_at="2024-02-01T00:00:00Z"), "clean"),
    ({"event_id": "l1", "item_id": "1", "timestamp": "2024-01-05T10:00:00Z"}, ListingReason.MISSING_PRICE),
    (listing(event_id=""), Reason.MISSING_FIELD),
    (listing(item="3"), Reason.UNKNOWN_ITEM),
    (listing(price=0), Reason.NON_POSITIVE_PRICE),
    (listing(price="ninety"), Reason.MALFORMED_PRICE),
    (listing(price=float("inf")), Reason.MALFORMED_PRICE),
    (listing(price=True), Reason.MALFORMED_PRICE),
    (listing(ts=20240105), Reason.MALFORMED_TIMESTAMP),
    (listing(ts="2024-02-05T10:00:00Z"), Reason.FUTURE_TIMESTAMP),
    (listing(ts="2016-01-05T10:00:00Z"), Reason.BEFORE_COLLECTION),
    (listing(expires_at="2024-01-05T09:00:00Z"), ListingReason.MALFORMED_EXPIRY),  # before the listing
    (listing(expires_at="soon"), ListingReason.MALFORMED_EXPIRY),
    (listing(price=None, expires_at="2024-02-01T00:00:00Z"), ListingReason.MALFORMED_EXPIRY),
    (listing(price_eth=91.0), Reason.MALFORMED_ROW),  # two prices that disagree
    (listing(source=["a"]), Reason.MALFORMED_ROW),
    (listing(price=float("nan")), Reason.MALFORMED_PRICE),  # NaN is no withdrawal
    (listing(price=None, price_eth=5.0), Reason.MALFORMED_ROW),  # null and a number
    (listing(event_id=1e250), Reason.MALFORMED_ROW),  # 251 digits once read as a key
    ({"_error": "line 3: unclosed quote", "_raw": 'l3,"2024'}, Reason.MALFORMED_ROW),  # a file's unread line
])
def test_each_refusal_names_its_reason(row, reason):
    assert reason_of(row) == reason


def test_an_expiry_past_2200_is_no_expiry():
    outcome = validate_listing(listing(expires_at="9999-12-31T23:59:59Z"), KNOWN, NOW)
    assert outcome.expires_at is None


def test_a_batch_keeps_one_listing_per_event_and_refuses_a_conflicting_twin():
    batch = validate_listings([listing(), listing(), listing(price=80.0), listing("l2", item="3")], KNOWN, NOW)
    assert [x.event_id for x in batch.clean] == ["l1"] and batch.repeated_in_batch == 1
    assert sorted(r.reason for r in batch.rejected) == [Reason.DUPLICATE_CONFLICT, Reason.UNKNOWN_ITEM]


def book(*rows, sales=()) -> ListingBook:
    """Listing events (item, ts, price, expires_at[, source]) and sales (item, ts, latest possible
    time)."""
    frame = pd.DataFrame([(*row, "")[:5] for row in rows], columns=["item_key", "ts", "price", "expires_at", "source"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["expires_at"] = pd.to_datetime(frame["expires_at"])
    sales_frame = pd.DataFrame(sales, columns=["item_key", "ts", "latest"])
    for column in ("ts", "latest"):
        sales_frame[column] = pd.to_datetime(sales_frame[column])
    return ListingBook(frame.astype({"price": float}), sales_frame)


def asks_at(listings, at):
    return open_asks(listings, np.array(["1", "2", "3"], dtype=object), pd.Timestamp(at))


EVENTS = (
    ("1", "2024-01-01", 90.0, None), ("1", "2024-01-03", 85.0, None),  # lowered
    ("2", "2024-01-01", 50.0, "2024-01-04"),  # expires
    ("3", "2024-01-01", 70.0, None), ("3", "2024-01-03", None, None),  # withdrawn
)


def test_the_open_ask_is_the_latest_event_before_the_moment_unless_withdrawn_expired_or_sold():
    price, listed_at = asks_at(book(*EVENTS), "2024-01-02")
    assert price.tolist() == [90.0, 50.0, 70.0]
    assert listed_at[0] == np.datetime64("2024-01-01")
    price, _ = asks_at(book(*EVENTS), "2024-01-05")
    assert price[0] == 85.0 and np.isnan(price[1:]).all()
    # An event at the moment itself is not before it.
    price, _ = asks_at(book(*EVENTS), "2024-01-03")
    assert price[0] == 90.0 and price[2] == 70.0


@pytest.mark.parametrize("sale, still_open", [
    (("1", "2024-01-02", "2024-01-02"), True),  # sold before the listing
    (("1", "2024-01-04", "2024-01-04"), False),  # filled it
    (("1", "2024-01-03 00:10", "2024-01-03 01:00"), False),  # known to the hour: may have come after it
    (("1", "2024-01-06", "2024-01-06"), True),  # not yet stored at the moment asked
])
def test_a_sale_that_may_have_come_after_the_listing_ends_it(sale, still_open):
    listings = book(("1", "2024-01-03 00:30", 85.0, None), sales=[sale])
    price, _ = asks_at(listings, "2024-01-05")
    assert bool(price[0] == 85.0) == still_open


def test_each_source_keeps_its_own_offer_and_the_lowest_open_one_is_the_ask():
    listings = book(("1", "2024-01-01", 90.0, None, "opensea"), ("1", "2024-01-02", 80.0, None, "punks"),
                    ("1", "2024-01-03", None, None, "punks"),  # withdrawn there, still offered on the other
                    ("2", "2024-01-01", 60.0, None, "opensea"), ("2", "2024-01-02", 55.0, None, "punks"))
    assert asks_at(listings, "2024-01-02 12:00")[0][:2].tolist() == [80.0, 55.0]
    price, listed_at = asks_at(listings, "2024-01-05")
    assert price[:2].tolist() == [90.0, 55.0] and listed_at[0] == np.datetime64("2024-01-01")
    # A sale ends every source's offer: the item changed hands.
    sold = book(("1", "2024-01-01", 90.0, None, "opensea"), ("1", "2024-01-02", 80.0, None, "punks"),
                sales=[("1", "2024-01-03", "2024-01-03")])
    assert np.isnan(asks_at(sold, "2024-01-05")[0][0])


def filtered_open_asks(book: ListingBook, item_keys: np.ndarray, at: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """open_asks as it read the book before it was indexed: the whole book filtered at each moment."""
    known = book.events[book.events["ts"] < at]
    offers = known.sort_values("ts", kind="stable").drop_duplicates(["item_key", "source"], keep="last")
    sold = book.sales[book.sales["ts"] < at].groupby("item_key")["latest"].max()
    last_sold = sold.reindex(offers["item_key"]).to_numpy(dtype="datetime64[ns]")
    ts = offers["ts"].to_numpy(dtype="datetime64[ns]")
    expires = offers["expires_at"].to_numpy(dtype="datetime64[ns]")
    is_open = (~np.isnan(offers["price"].to_numpy(dtype=float))
               & ~(~np.isnat(last_sold) & (last_sold >= ts))
               & ~(~np.isnat(expires) & (expires <= np.datetime64(at))))
    lowest = offers[is_open].sort_values(["price", "ts"], kind="stable").drop_duplicates("item_key")
    found = lowest.set_index("item_key").reindex(pd.Index(item_keys, dtype=object))
    return found["price"].to_numpy(dtype=float), found["ts"].to_numpy(dtype="datetime64[ns]")


def random_book(rng: np.random.Generator, n_events: int, n_sales: int) -> ListingBook:
    """Events and sales on a coarse grid, so that many share an instant with each other, with an
    expiry or with the moments asked; prices often tie; some sales known only to the hour."""
    half_hours = pd.to_timedelta(30 * rng.integers(0, 200, n_events), unit="min")
    expires = half_hours + pd.to_timedelta(30 * rng.integers(1, 20, n_events), unit="min")
    events = pd.DataFrame({
        "item_key": rng.integers(0, 40, n_events).astype(str).astype(object),
        "source": rng.choice(["a", "b", "c"], n_events).astype(object),
        "ts": pd.Timestamp("2024-01-01") + half_hours,
        "price": np.where(rng.random(n_events) < 0.15, np.nan, rng.integers(1, 8, n_events).astype(float)),
        "expires_at": (pd.Timestamp("2024-01-01") + expires).where(rng.random(n_events) < 0.4),
    })
    sale_ts = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(10 * rng.integers(0, 600, n_sales), unit="min"))
    sales = pd.DataFrame({"item_key": rng.integers(0, 45, n_sales).astype(str).astype(object),  # some never listed
                          "ts": sale_ts, "latest": latest_moment(sale_ts, rng.random(n_sales) < 0.3)})
    return ListingBook(events, sales)


def test_the_indexed_book_reads_every_moment_as_filtering_the_whole_book_does():
    rng = np.random.default_rng(7)
    book = random_book(rng, 3000, 400)
    keys = np.array([*map(str, range(50)), "3", "7"], dtype=object)  # unlisted items and repeats too
    grid = pd.Timestamp("2024-01-01") + pd.to_timedelta(10 * np.arange(-1, 660), unit="min")
    moments = [*grid[::3], *grid[rng.choice(len(grid), 60, replace=False)]]  # on every event's instant and off them
    for at in moments:
        price, listed_at = open_asks(book, keys, at)
        expected_price, expected_at = filtered_open_asks(book, keys, at)
        np.testing.assert_array_equal(price, expected_price, err_msg=str(at))
        np.testing.assert_array_equal(listed_at, expected_at, err_msg=str(at))
    assert np.isfinite(open_asks(book, keys, grid[300])[0]).sum() > 10  # the comparison is not of empty books
    no_sales = ListingBook(book.events, book.sales.iloc[:0])
    for at in grid[::25]:
        np.testing.assert_array_equal(open_asks(no_sales, keys, at)[0], filtered_open_asks(no_sales, keys, at)[0])


def test_the_source_is_part_of_what_a_listing_event_is():
    a = validate_listing(listing(source="opensea"), KNOWN, NOW)
    b = validate_listing(listing(source="punks"), KNOWN, NOW)
    assert a.content_hash != b.content_hash


def test_no_listings_means_no_asks():
    for listings in (None, ListingBook.empty()):
        price, listed_at = asks_at(listings, "2024-01-05")
        assert np.isnan(price).all() and np.isnat(listed_at).all()


def call(digest: str, *rows: dict) -> WebhookCall:
    return WebhookCall(list(rows), b"{}", digest, 1_700_000_000, "test")


def test_storing_listings_is_idempotent_and_keeps_refused_rows(sqlite_market):
    session, coll = sqlite_market
    first = ingest_listings(session, coll, [listing(), listing("l2", item="2", price=None), listing("bad", item="9")],
                            NOW)
    again = ingest_listings(session, coll, [listing(), listing("l2", item="2", price=None), listing("bad", item="9")],
                            NOW)
    conflict = ingest_listings(session, coll, [listing(price=70.0)], NOW)
    session.commit()
    assert (first.accepted, first.duplicate, first.rejected) == (2, 0, 1)
    assert (again.accepted, again.duplicate, again.rejected, again.rejected_kept_before) == (0, 2, 1, 1)
    assert conflict.reasons == {Reason.DUPLICATE_CONFLICT: 1}
    assert dict(session.exec(select(Listing.event_id, Listing.price)).all()) == {"l1": 90.0, "l2": None}
    kept = session.exec(select(RejectedListing.event_id, RejectedListing.reason)).all()
    assert sorted(kept) == [("bad", Reason.UNKNOWN_ITEM), ("l1", Reason.DUPLICATE_CONFLICT)]
    loaded = load_listings(session, coll, NOW)
    assert loaded.events["item_key"].tolist() == ["1", "2"] and np.isnan(loaded.events["price"].iloc[1])
    assert loaded.sales.empty


def test_a_signed_call_is_refused_as_a_replay_once_accepted(sqlite_market):
    session, _ = sqlite_market
    first = ingest_listing_call(session, "cryptopunks", call("d1", listing()))
    replay = ingest_listing_call(session, "cryptopunks", call("d1", listing()))
    session.commit()
    assert first.report.accepted == 1 and replay.report is None and replay.accepted_before <= datetime.now(UTC)
    assert session.exec(select(WebhookDelivery.signature_sha256, WebhookDelivery.status_code)).all() == [("d1", 202)]


def test_the_nowcast_signal_reads_an_open_ask_before_the_last_sale():
    from dataclasses import replace

    from models.estimator import TrainParams, fit
    from models.nowcast import value_all_items
    from tests.unit.test_features import synthetic_market

    data = synthetic_market()
    model = fit(data, TrainParams(max_iter=20, band_max_iter=10, min_samples_leaf=10))
    at = pd.Timestamp("2021-03-01 12:00")
    before = value_all_items(model, data, at, 0.1, 0.15, signal_max_age_days=0)  # no sale counts: all HOLD
    assert set(before["signal"]) == {"HOLD"} and before["ask_price"].isna().all()
    cheap, dear, later = before["item_key"].iloc[:3]
    value = before.set_index("item_key")["fair_value"]
    listed = replace(data, listings=book(
        (cheap, "2021-02-20", 0.5 * value[cheap], None), (dear, "2021-02-20", 2.0 * value[dear], None),
        (later, "2021-03-02", 0.5 * value[later], None)))  # listed after the nowcast's moment
    after = value_all_items(model, listed, at, 0.1, 0.15, signal_max_age_days=0).set_index("item_key")
    # An ask over the value is no SELL: nobody can sell at another holder's ask.
    assert after.loc[[cheap, dear, later], "signal"].tolist() == ["BUY", "HOLD", "HOLD"]
    assert after.loc[dear, "ask_price"] == pytest.approx(2.0 * value[dear])
    assert after.loc[cheap, "ask_price"] == pytest.approx(0.5 * value[cheap])
    assert after.loc[cheap, "ask_at"] == pd.Timestamp("2021-02-20") and pd.isna(after.loc[later, "ask_at"])
    pd.testing.assert_series_equal(after["fair_value"], value)  # an ask never moves a value


def test_a_silent_market_still_reads_the_asks_open_now():
    from dataclasses import replace

    from models.estimator import TrainParams, fit
    from models.nowcast import value_all_items
    from tests.unit.test_features import synthetic_market

    data = synthetic_market()
    model = fit(data, TrainParams(max_iter=20, band_max_iter=10, min_samples_leaf=10))
    years_later = pd.Timestamp("2026-12-04")
    item = data.items.index[0]
    listed = replace(data, listings=book((item, "2026-12-01", 0.01, None)))
    values = value_all_items(model, listed, years_later, 0.1, 0.15, 30, stale_after_days=7).set_index("item_key")
    assert values.loc[item, "ask_price"] == 0.01 and values.loc[item, "signal"] == "BUY"


def test_the_book_holds_what_decides_the_asks_at_its_moment_and_no_more(sqlite_market):
    from storage.tables import Sale

    session, coll = sqlite_market
    ingest_listings(session, coll, [listing("old", ts="2024-01-02T10:00:00Z", price=99.0),
                                    listing("new", ts="2024-01-03T10:30:00Z"),
                                    listing("other", ts="2024-01-03T11:00:00Z", source="opensea", price=95.0),
                                    listing("later", ts="2024-01-09T00:00:00Z", price=70.0)], NOW)
    for event_id, item, ts, precision, wash in (("s0", "1", "2024-01-01T09:00:00", "second", None),
                                                 ("s1", "1", "2024-01-03T10:10:00", "hour", None),
                                                 ("s2", "1", "2024-01-02T09:00:00", "second", "round_trip"),
                                                 ("s3", "1", "2024-01-08T09:00:00", "second", None),  # after
                                                 ("s4", "2", "2024-01-03T12:00:00", "second", None)):  # not listed
        session.add(Sale(collection_id=coll.id, event_id=event_id, item_key=item, price=90.0, content_hash=event_id,
                         ts=datetime.fromisoformat(ts).replace(tzinfo=UTC), time_precision=precision,
                         wash_reason=wash))
    session.commit()
    at = datetime(2024, 1, 5, tzinfo=UTC)
    loaded = load_listings(session, coll, at)
    # Per source its latest event before the moment; per precision the item's latest sale before it.
    assert sorted(loaded.events["price"].tolist()) == [90.0, 95.0]
    assert sorted(map(tuple, loaded.sales.astype(str).to_numpy())) == [
        ("1", "2024-01-02 09:00:00", "2024-01-02 09:00:00"), ("1", "2024-01-03 10:10:00", "2024-01-03 11:00:00")]
    price, _ = open_asks(loaded, np.array(["1"], dtype=object), pd.Timestamp(at).tz_localize(None))
    # The sale recorded at 10:10 may have come as late as 11:00, its hour's end: after the 10:30
    # listing and not before the 11:00 one, so both sources' offers are ended.
    assert np.isnan(price[0])
