import json
import math

import numpy as np
import pandas as pd
import pytest

from models.signal_kpis import signal_kpis, signal_stability


def _events(rows: list[tuple]) -> pd.DataFrame:
    """rows: (event_id, timestamp, item_id, price, fair_value)."""
    frame = pd.DataFrame(rows, columns=["event_id", "timestamp", "item_id", "price", "fair_value"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["p10"] = frame["fair_value"] * 0.8
    frame["p90"] = frame["fair_value"] * 1.2
    return frame


def _sales(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ts", "item_key", "price"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


# Index 100 up to Jan 10, 120 from Jan 11 (a 20% market rise).
INDEX = pd.Series(
    np.where(pd.date_range("2020-01-01", "2020-03-31").day_of_year <= 10, 100.0, 120.0),
    index=pd.date_range("2020-01-01", "2020-03-31"),
)


@pytest.fixture
def kpis():
    events = _events(
        [
            ("a", "2020-01-01 10:00", "a", 80.0, 100.0),  # BUY; next 100: +25% -> rose (hit)
            ("b", "2020-01-01 10:00", "b", 85.0, 100.0),  # BUY; next 88: +3.5% -> neither (false BUY)
            ("c", "2020-01-01 10:00", "c", 100.0, 100.0),  # HOLD; next 120 but market +20% -> adjusted 0
            ("d", "2020-01-01 10:00", "d", 100.0, 100.0),  # HOLD; next 115 -> rose (missed by BUY)
            ("e", "2020-01-01 10:00", "e", 120.0, 100.0),  # SELL; next 100: -16.7% -> fell (hit)
            ("f", "2020-01-01 10:00", "f", 120.0, 100.0),  # SELL; resale after 30 days -> unknown
            ("h", "2020-01-01 10:00", "h", 100.0, 100.0),  # HOLD; next 150 -> rose (missed by BUY)
            ("g", "2020-01-01 10:00", "g", 120.0, np.nan),  # no fair value -> filtered
        ]
    )
    sales = _sales(
        [
            ("2019-12-31 10:00", "a", 500.0),  # before the event: never an outcome
            ("2020-01-01 10:00", "a", 80.0),  # the scored sale itself
            ("2020-01-05 10:00", "a", 100.0),
            ("2020-01-06 10:00", "a", 10.0),  # not the NEXT sale
            ("2020-01-05 10:00", "b", 88.0),
            ("2020-01-15 10:00", "c", 120.0),
            ("2020-01-05 10:00", "d", 115.0),
            ("2020-01-05 10:00", "e", 100.0),
            ("2020-02-15 10:00", "f", 10.0),
            ("2020-01-08 10:00", "h", 150.0),
        ]
    )
    return signal_kpis(events, sales, INDEX, horizon_days=30, gain=0.10)


def test_counts_and_coverage(kpis):
    assert (kpis.n_rows, kpis.n_events, kpis.n_filtered) == (8, 7, 1)
    assert kpis.filtered == {"fair_value_not_finite_positive": 1}
    assert (kpis.n_known, kpis.n_unknown) == (6, 1)
    assert kpis.unknown == {"no_resale_within_horizon": 1}
    assert kpis.coverage == pytest.approx(6 / 7)
    assert kpis.distribution == {"BUY": 2, "SELL": 2, "HOLD": 3}
    assert kpis.distribution_known == {"BUY": 2, "SELL": 1, "HOLD": 3}
    assert kpis.signal_rate == pytest.approx(4 / 7)


def test_precision_and_recall_by_hand(kpis):
    assert (kpis.n_rose, kpis.n_fell) == (3, 1)  # a, d, h rose; e fell; c is flat after the market move
    assert kpis.buy_precision == pytest.approx(1 / 2)  # a of {a, b}
    assert kpis.buy_recall == pytest.approx(1 / 3)  # a of {a, d, h}
    assert kpis.sell_precision == pytest.approx(1.0)  # e of {e}; f is unknown and left out
    assert kpis.sell_recall == pytest.approx(1.0)
    assert kpis.base_rate_rise == pytest.approx(3 / 6)
    assert kpis.base_rate_fall == pytest.approx(1 / 6)


def test_outcome_is_the_next_sale_strictly_after_and_market_adjusted(kpis):
    out = kpis.outcomes.set_index("event_id")
    assert out.loc["a", "next_price"] == 100.0
    assert out.loc["a", "adjusted_change"] == pytest.approx(0.25)
    assert out.loc["c", "adjusted_change"] == pytest.approx(0.0)  # 120/100 over a 120/100 market
    assert not out.loc["f", "known"] and np.isnan(out.loc["f", "adjusted_change"])


def test_without_an_index_the_raw_change_is_used():
    events = _events([("c", "2020-01-01 10:00", "c", 100.0, 100.0)])
    sales = _sales([("2020-01-15 10:00", "c", 120.0)])
    assert signal_kpis(events, sales, INDEX).n_rose == 0
    assert signal_kpis(events, sales, None).n_rose == 1


def test_gain_threshold_is_inclusive_and_sell_is_symmetric():
    events = _events(
        [
            ("up", "2020-01-01 10:00", "u", 90.0, 100.0),  # BUY, next exactly +10%
            ("down", "2020-01-01 10:00", "v", 115.0, 100.0),  # SELL exactly at +15%, next -10%
        ]
    )
    sales = _sales([("2020-01-02 10:00", "u", 99.0), ("2020-01-02 10:00", "v", 103.5)])
    k = signal_kpis(events, sales, INDEX)
    assert (k.distribution["BUY"], k.distribution["SELL"]) == (1, 1)
    assert (k.buy_precision, k.sell_precision) == (1.0, 1.0)


def test_unknown_when_the_index_has_no_level_for_the_next_sale():
    events = _events([("x", "2020-03-30 10:00", "x", 80.0, 100.0)])
    sales = _sales([("2020-04-05 10:00", "x", 100.0)])  # after the index ends
    k = signal_kpis(events, sales, INDEX)
    assert (k.n_known, k.unknown) == (0, {"no_index_level": 1})
    assert math.isnan(k.buy_precision)
    assert json.loads(json.dumps(k.as_dict(), allow_nan=False))["buy_precision"] is None


def test_daily_prices_as_observations_work_for_a_second_market():
    # trading cards: one price per card per day; the "next sale" is the next day's price
    days = pd.date_range("2020-01-01", periods=3)
    sales = pd.DataFrame({"ts": list(days) * 2, "item_key": ["c1"] * 3 + ["c2"] * 3,
                          "price": [1.0, 1.2, 1.3, 2.0, 1.9, 1.0]})
    events = _events([("1", days[0], "c1", 1.0, 1.5), ("2", days[0], "c2", 2.0, 1.5)])
    k = signal_kpis(events, sales, None, horizon_days=1)
    out = k.outcomes.set_index("event_id")
    assert list(out["next_price"]) == [1.2, 1.9]
    assert (k.buy_precision, k.n_fell) == (1.0, 0)  # c2 fell only 5% within the one-day horizon


def test_kpis_as_dict_is_json():
    events = _events([("a", "2020-01-01 10:00", "a", 80.0, 100.0)])
    d = signal_kpis(events, _sales([]), INDEX).as_dict()
    text = json.dumps(d, allow_nan=False)
    assert "outcomes" not in json.loads(text)
    assert d["coverage"] == 0.0 and d["buy_precision"] is None


# --- stability -----------------------------------------------------------------------------


def test_flip_rate_and_run_lengths_on_a_tiny_history():
    t = pd.date_range("2021-01-01", periods=4, freq="30min")
    rows = [
        # item 1: BUY BUY HOLD BUY -> 3 pairs, 2 flips; runs 2, 1, 1
        (t[2], "1", "HOLD"), (t[0], "1", "BUY"), (t[3], "1", "BUY"), (t[1], "1", "BUY"),
        # item 2: SELL SELL SELL -> 2 pairs, 0 flips; one run of 3
        (t[0], "2", "SELL"), (t[1], "2", "SELL"), (t[2], "2", "SELL"),
        # item 3: one snapshot -> no pair; one run of 1
        (t[0], "3", "HOLD"),
        # dropped: a duplicate (last wins, so item 2 stays SELL at t[2]) and a missing signal
        (t[2], "2", "SELL"), (t[3], "3", None),
    ]
    history = pd.DataFrame(rows, columns=["snapshot_time", "item_id", "signal"])
    s = signal_stability(history)
    assert (s.n_rows, s.n_dropped, s.n_items, s.n_snapshots) == (10, 2, 3, 4)
    assert (s.n_pairs, s.n_flips) == (5, 2)
    assert s.flip_rate == pytest.approx(0.4)
    assert s.by_signal["BUY"] == {"n_pairs": 2, "n_flips": 1, "flip_rate": 0.5}  # BUY->BUY, BUY->HOLD
    assert s.by_signal["HOLD"] == {"n_pairs": 1, "n_flips": 1, "flip_rate": 1.0}  # HOLD->BUY
    assert s.by_signal["SELL"] == {"n_pairs": 2, "n_flips": 0, "flip_rate": 0.0}
    assert s.n_runs == 5
    assert s.mean_run_length == pytest.approx(8 / 5)
    assert s.mean_run_length_by_signal == pytest.approx({"BUY": 1.5, "HOLD": 1.0, "SELL": 3.0})
    json.dumps(s.as_dict(), allow_nan=False)


def test_pairs_and_runs_never_cross_items():
    # sorted a, a, b, b, c: a ends BUY and b starts BUY (still two runs); b ends SELL and c is HOLD (not a flip)
    history = pd.DataFrame(
        {"snapshot_time": pd.to_datetime(["2021-01-01", "2021-01-02"] * 2 + ["2021-01-01"]),
         "item_id": ["a", "a", "b", "b", "c"], "signal": ["HOLD", "BUY", "BUY", "SELL", "HOLD"]}
    )
    s = signal_stability(history)
    assert (s.n_pairs, s.n_flips, s.n_runs) == (2, 2, 5)


def test_a_repeated_snapshot_row_keeps_the_last_one():
    history = pd.DataFrame(
        {"snapshot_time": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-02"]),
         "item_id": ["x", "x", "x"], "signal": ["BUY", "BUY", "SELL"]}
    )
    s = signal_stability(history)
    assert (s.n_dropped, s.n_pairs, s.n_flips) == (1, 1, 1)


def test_empty_history():
    s = signal_stability(pd.DataFrame(columns=["snapshot_time", "item_id", "signal"]))
    assert (s.n_pairs, s.n_runs) == (0, 0)
    assert math.isnan(s.flip_rate)
    assert s.as_dict()["flip_rate"] is None
