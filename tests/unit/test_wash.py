"""Wash-trade flags (models/wash.py): each rule on a hand-made case, the zero address, the
window's edge, causality, and the vectorised rules against a plain loop on random sales."""

import numpy as np
import pandas as pd
import pytest

from models.wash import WINDOW, ZERO_ADDRESS, WashReason, reasons_with_stored, strongest, wash_reasons


def sales(*rows) -> pd.DataFrame:
    """rows: (day offset, item, seller, buyer)."""
    start = pd.Timestamp("2021-06-01")
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(len(rows))],
        "ts": [start + pd.Timedelta(days=d) for d, *_ in rows],
        "item_key": [str(r[1]) for r in rows],
        "seller": [r[2] for r in rows],
        "buyer": [r[3] for r in rows],
    })


def test_a_sale_to_oneself_is_a_self_trade():
    assert wash_reasons(sales((0, 1, "0xa", "0xa"))).tolist() == [WashReason.SELF_TRADE]


def test_an_item_coming_back_to_its_seller_is_a_round_trip():
    reasons = wash_reasons(sales((0, 1, "0xa", "0xb"), (3, 1, "0xb", "0xa"))).tolist()
    assert reasons == [None, WashReason.ROUND_TRIP]


def test_a_return_of_another_item_or_an_onward_sale_is_not_a_round_trip():
    assert wash_reasons(sales((0, 1, "0xa", "0xb"), (3, 2, "0xb", "0xa"))).tolist() == [None, None]
    assert wash_reasons(sales((0, 1, "0xa", "0xb"), (3, 1, "0xb", "0xc"))).tolist() == [None, None]


def test_a_pairs_third_trade_in_the_window_is_flagged_in_either_direction():
    reasons = wash_reasons(sales((0, 1, "0xa", "0xb"), (1, 2, "0xb", "0xa"), (2, 3, "0xa", "0xb"),
                                 (3, 4, "0xa", "0xc"))).tolist()
    assert reasons == [None, None, WashReason.REPEATED_PAIR, None]


def test_trades_older_than_the_window_do_not_count():
    days = WINDOW.days
    assert wash_reasons(sales((0, 1, "0xa", "0xb"), (days + 1, 1, "0xb", "0xa"))).tolist() == [None, None]
    assert wash_reasons(sales((0, 1, "0xa", "0xb"), (days, 1, "0xb", "0xa"))).tolist() == [None, WashReason.ROUND_TRIP]
    assert wash_reasons(sales((0, 1, "0xa", "0xb"), (1, 2, "0xa", "0xb"), (days + 0.5, 3, "0xa", "0xb"))).tolist() \
        == [None, None, None]


@pytest.mark.parametrize("missing", ["", ZERO_ADDRESS])
def test_an_unknown_party_proves_nothing(missing):
    rows = [(0, 1, "0xa", missing), (1, 1, missing, "0xa"), (2, 1, missing, missing), (3, 2, "0xa", missing)]
    assert wash_reasons(sales(*rows)).isna().all()


def test_the_strongest_reason_wins_and_strongest_keeps_it():
    reasons = wash_reasons(sales((0, 1, "0xa", "0xb"), (1, 2, "0xa", "0xb"), (2, 1, "0xb", "0xa"))).tolist()
    assert reasons[2] == WashReason.ROUND_TRIP  # also the pair's third trade
    assert strongest(WashReason.REPEATED_PAIR, WashReason.ROUND_TRIP) == WashReason.ROUND_TRIP
    assert strongest(WashReason.SELF_TRADE, None) == WashReason.SELF_TRADE
    assert strongest(None, None) is None


def random_sales(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    wallets = np.array([f"0x{i:02d}" for i in range(8)] + ["", ZERO_ADDRESS])
    frame = pd.DataFrame({
        "event_id": [f"e{i:04d}" for i in range(n)],
        # whole hours, so equal times happen and the event id breaks the tie
        "ts": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 24 * 120, n), unit="h"),
        "item_key": rng.integers(0, 15, n).astype(str),
        "seller": rng.choice(wallets, n),
        "buyer": rng.choice(wallets, n),
    })
    return frame.sample(frac=1, random_state=seed)  # not in time order: the function sorts


def reference(frame: pd.DataFrame) -> list:
    """The rules as a plain loop over every earlier sale."""
    order = frame.sort_values(["ts", "event_id"], kind="stable")
    rows = list(order.itertuples())
    out = {}
    party = lambda a: a not in ("", ZERO_ADDRESS)  # noqa: E731
    for k, s in enumerate(rows):
        earlier = [e for e in rows[:k] if e.ts >= s.ts - WINDOW]
        reason = None
        if party(s.seller) and party(s.buyer):
            if s.seller == s.buyer:
                reason = WashReason.SELF_TRADE
            elif any(e.item_key == s.item_key and e.seller == s.buyer and e.buyer == s.seller for e in earlier):
                reason = WashReason.ROUND_TRIP
            elif sum({e.seller, e.buyer} == {s.seller, s.buyer} for e in earlier) >= 2:
                reason = WashReason.REPEATED_PAIR
        out[s.Index] = reason
    return [out[i] for i in frame.index]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_vectorised_rules_match_a_plain_loop(seed):
    frame = random_sales(400, seed)
    got = wash_reasons(frame).tolist()
    assert got == reference(frame)
    assert {WashReason.SELF_TRADE, WashReason.ROUND_TRIP, WashReason.REPEATED_PAIR} <= set(got)  # all exercised


def test_a_flag_never_changes_when_later_sales_are_added():
    frame = random_sales(400, 4).sort_values(["ts", "event_id"])
    cut = frame["ts"].iloc[200]
    early = frame[frame["ts"] < cut]
    assert wash_reasons(early).tolist() == wash_reasons(frame)[early.index].tolist()


def test_stored_sales_are_evidence_for_new_ones_and_new_ones_for_stored_ones():
    """A replay's file on a database: a file sale that returns a stored sale's item is a round
    trip; a file sale that is the earlier leg of a stored, clean sale makes that one suspect; a
    stored flag stays the stored sale's; a file's copy of a stored event is the stored one."""
    stored = sales((0, 1, "0xa", "0xb"), (10, 2, "0xd", "0xc"), (11, 3, "0xe", "0xe"), (12, 4, "0xf", "0xg"))
    stored["wash_reason"] = [None, None, WashReason.SELF_TRADE, None]
    new = sales((2, 1, "0xb", "0xa"), (8, 2, "0xc", "0xd"), (12, 4, "0xf", "0xg"), (13, 5, "0xh", "0xi"))
    new["event_id"] = ["f0", "f1", "e3", "f3"]  # e3: the stored sale, sent again
    reasons, now_suspect = reasons_with_stored(new, stored)
    assert reasons.tolist() == [WashReason.ROUND_TRIP, None, None, None]
    assert reasons.index.tolist() == new.index.tolist()
    assert now_suspect[["event_id", "wash_reason"]].to_dict("records") == [
        {"event_id": "e1", "wash_reason": WashReason.ROUND_TRIP}]


def test_without_stored_sales_the_new_ones_are_flagged_among_themselves():
    new = sales((0, 1, "0xa", "0xb"), (3, 1, "0xb", "0xa"))
    empty = new.iloc[:0].assign(wash_reason=pd.Series(dtype=object))
    reasons, now_suspect = reasons_with_stored(new, empty)
    assert reasons.tolist() == wash_reasons(new).tolist() and now_suspect.empty


def test_the_file_path_leaves_wash_trades_and_refused_rows_out_and_the_report_counts_them(tmp_path):
    from fairvalue.evaluation import describe_filtered, filtered_out
    from fairvalue.settings import get_settings
    from storage.bundled import market_data_from_files

    bundled = get_settings().data_dir / "cryptopunks"
    path = tmp_path / "later.csv"
    path.write_text(
        "event_id,timestamp,punk_id,price_eth,seller,buyer,source\n"
        "a,2022-01-05T10:00:00Z,7,90,0xaa,0xbb,test\n"
        "b,2022-01-06T10:00:00Z,7,150,0xbb,0xaa,test\n"  # the round trip's return
        "c,2022-01-07T10:00:00Z,8,0,0xaa,0xcc,test\n"  # price 0: refused at validation
        "d,2022-01-08T10:00:00Z,9,95,0xdd,0xee,test\n")
    data = market_data_from_files(bundled / "punks.csv", [path], [], [], 0.2)
    assert data.sales["event_id"].tolist() == ["a", "d"]
    assert dict(zip(data.excluded["event_id"], data.excluded["reason"], strict=True)) == {
        "b": WashReason.ROUND_TRIP, "c": "non_positive_price"}
    window = filtered_out(data, pd.Timestamp("2022-01-06"), pd.Timestamp("2022-02-01"))
    assert window == {"n": 2, "by_reason": {"non_positive_price": 1, WashReason.ROUND_TRIP: 1}}
    assert filtered_out(data, pd.Timestamp("2022-01-07"), pd.Timestamp("2022-02-01"))["n"] == 1
    assert describe_filtered(window) == "filtered out: 2 (non_positive_price 1, wash_round_trip 1)"


def test_a_refused_row_dated_beyond_what_pandas_holds_is_left_out_of_the_excluded_list():
    from datetime import UTC, datetime

    from models.features import excluded_frame

    frame = excluded_frame([("far", datetime(9999, 12, 31, tzinfo=UTC), "1", None, "future_timestamp"),
                            ("near", datetime(2021, 1, 1, tzinfo=UTC), "2", 3.0, "non_positive_price")])
    assert frame["event_id"].tolist() == ["near"] and frame["ts"].dtype == "datetime64[ns]"


def test_a_wash_trade_known_only_to_the_hour_ends_offers_from_its_hour_s_end_in_a_replay():
    """A replay's listing book holds the wash trades too (any sale ends offers), at the moment a
    nowcast learns of them, as it holds the clean sales (models.listings.listing_history)."""
    from datetime import UTC, datetime

    import pandas as pd

    from fairvalue.evaluation import _every_sale
    from models.features import MarketData, excluded_frame
    from models.listings import listing_history

    stamped = datetime(2021, 5, 1, 10, 7, tzinfo=UTC)
    excluded = excluded_frame([("hourly", stamped, "1", 5.0, "wash_self_trade", True),
                               ("exact", stamped, "2", 5.0, "wash_self_trade", False),
                               ("refused", stamped, "3", None, "unknown_item")])  # no precision given: exact
    assert excluded.set_index("event_id")["hour_precision"].to_dict() == {"hourly": True, "exact": False,
                                                                          "refused": False}
    sales = pd.DataFrame({"event_id": [], "ts": pd.Series([], dtype="datetime64[ns]"), "item_key": [],
                          "price": [], "hour_precision": pd.Series([], dtype=bool)})
    data = MarketData(pd.DataFrame(index=pd.Index(["1", "2", "3"], name="item_key")), sales,
                      pd.DataFrame(columns=["day", "floor", "eth_usd"]), excluded=excluded)
    book = listing_history(pd.DataFrame(columns=["event_id", "item_key", "source", "ts", "price", "expires_at"]),
                           _every_sale(data))
    known_at = book.sales.set_index("item_key")["ts"]
    assert known_at["1"] == pd.Timestamp("2021-05-01 11:00") and known_at["2"] == pd.Timestamp("2021-05-01 10:07")
    assert "3" not in known_at.index  # a refused row is no sale
