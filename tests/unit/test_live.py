import pandas as pd
import pytest

from models.live import SCORED_COLUMNS, paired, score_sales

T = pd.Timestamp


def _snapshots():
    return pd.DataFrame({"snapshot_id": [1, 2], "published_at": [T("2021-12-01 00:00"), T("2021-12-02 00:00")],
                         "model_version_id": [10, 11]})


def _rows():
    return pd.DataFrame({
        "snapshot_id": [1, 1, 2, 2],
        "item_key": ["7", "8", "7", "8"],
        "fair_value": [100.0, 200.0, 110.0, 220.0],
        "p10": [90.0, 180.0, 99.0, 198.0],
        "p90": [110.0, 220.0, 121.0, 242.0],
    })


def _sales(rows):
    return pd.DataFrame(rows, columns=["event_id", "ts", "item_key", "price"])


def test_a_sale_exactly_at_a_publish_time_uses_the_previous_snapshot():
    sales = _sales([("e1", T("2021-12-02 00:00"), "7", 105.0), ("e2", T("2021-12-02 00:00:01"), "7", 105.0)])
    scored, counts = score_sales(sales, _snapshots(), _rows())
    assert list(scored["event_id"]) == ["e1", "e2"]
    assert list(scored["snapshot_id"]) == [1, 2]
    assert list(scored["fair_value"]) == [100.0, 110.0]
    assert list(scored["model_version_id"]) == [10, 11]
    assert list(scored["published_at"]) == [T("2021-12-01"), T("2021-12-02")]
    assert counts == {"n_sales": 2, "n_scored": 2, "no_snapshot": 0, "no_row": 0}


def test_a_sale_before_any_snapshot_is_dropped_and_counted():
    sales = _sales([("early", T("2021-11-30 12:00"), "7", 90.0), ("at_first", T("2021-12-01 00:00"), "7", 90.0),
                    ("ok", T("2021-12-01 06:00"), "7", 95.0), ("no_ts", pd.NaT, "7", 95.0)])
    scored, counts = score_sales(sales, _snapshots(), _rows())
    assert list(scored["event_id"]) == ["ok"]
    assert counts == {"n_sales": 4, "n_scored": 1, "no_snapshot": 3, "no_row": 0}


def test_each_sale_gets_its_own_items_row():
    sales = _sales([("a", T("2021-12-01 10:00"), "8", 190.0), ("b", T("2021-12-01 11:00"), "7", 95.0),
                    ("c", T("2021-12-03 00:00"), "8", 230.0)])
    scored, _ = score_sales(sales, _snapshots(), _rows())
    assert list(scored.columns) == SCORED_COLUMNS
    got = scored.set_index("event_id")[["item_key", "price", "fair_value", "p10", "p90", "snapshot_id"]]
    assert got.loc["a"].tolist() == ["8", 190.0, 200.0, 180.0, 220.0, 1]
    assert got.loc["b"].tolist() == ["7", 95.0, 100.0, 90.0, 110.0, 1]
    assert got.loc["c"].tolist() == ["8", 230.0, 220.0, 198.0, 242.0, 2]


def test_an_item_missing_from_the_matched_snapshot_is_dropped_not_taken_from_an_older_one():
    rows = _rows()
    rows = rows[~((rows["snapshot_id"] == 2) & (rows["item_key"] == "8"))]
    sales = _sales([("a", T("2021-12-03"), "8", 230.0), ("b", T("2021-12-03"), "7", 100.0),
                    ("c", T("2021-12-03"), "999", 100.0)])
    scored, counts = score_sales(sales, _snapshots(), rows)
    assert list(scored["event_id"]) == ["b"]
    assert counts == {"n_sales": 3, "n_scored": 1, "no_snapshot": 0, "no_row": 2}


def test_keys_are_compared_as_strings_and_timestamps_as_naive_utc():
    rows = _rows().assign(item_key=lambda r: r["item_key"].astype(int))
    sales = _sales([("a", T("2021-12-01 23:30", tz="America/New_York"), 7, 100.0)])  # 04:30 UTC on Dec 2
    scored, _ = score_sales(sales, _snapshots(), rows)
    assert scored["item_key"].tolist() == ["7"]
    assert scored["snapshot_id"].tolist() == [2]
    assert scored["ts"].tolist() == [T("2021-12-02 04:30")]


def test_snapshots_published_at_the_same_instant_take_the_highest_id():
    snaps = pd.DataFrame({"snapshot_id": [5, 3], "published_at": [T("2021-12-01"), T("2021-12-01")],
                          "model_version_id": [1, 1]})
    rows = pd.DataFrame({"snapshot_id": [3, 5], "item_key": ["7", "7"], "fair_value": [1.0, 2.0],
                         "p10": [1.0, 2.0], "p90": [1.0, 2.0]})
    scored, _ = score_sales(_sales([("a", T("2021-12-02"), "7", 2.0)]), snaps, rows)
    assert scored["snapshot_id"].tolist() == [5]


def test_no_snapshots_drops_every_sale():
    sales = _sales([("a", T("2021-12-02"), "7", 2.0)])
    scored, counts = score_sales(sales, _snapshots().iloc[:0], _rows())
    assert scored.empty and list(scored.columns) == SCORED_COLUMNS
    assert counts == {"n_sales": 1, "n_scored": 0, "no_snapshot": 1, "no_row": 0}


def test_duplicate_rows_are_refused():
    with pytest.raises(ValueError):
        score_sales(_sales([]), _snapshots(), pd.concat([_rows(), _rows().iloc[:1]]))


def test_paired_keeps_only_common_events_in_the_same_order():
    champion = pd.DataFrame({"event_id": ["a", "b", "c", "d"], "fair_value": [1.0, 2.0, 3.0, 4.0]})
    previous = pd.DataFrame({"event_id": ["d", "x", "a", "c"], "fair_value": [40.0, 99.0, 10.0, 30.0]})
    new, old = paired(champion, previous)
    assert new["event_id"].tolist() == ["a", "c", "d"]
    assert old["event_id"].tolist() == ["a", "c", "d"]
    assert new["fair_value"].tolist() == [1.0, 3.0, 4.0]
    assert old["fair_value"].tolist() == [10.0, 30.0, 40.0]
    assert list(new.index) == list(old.index) == [0, 1, 2]


def test_paired_with_nothing_in_common_or_empty_frames():
    new, old = paired(pd.DataFrame({"event_id": ["a"]}), pd.DataFrame({"event_id": ["b"]}))
    assert new.empty and old.empty
    new, old = paired(pd.DataFrame(columns=["event_id", "price"]), pd.DataFrame({"event_id": ["b"]}))
    assert new.empty and old.empty
    with pytest.raises(ValueError):
        paired(pd.DataFrame({"event_id": ["a", "a"]}), pd.DataFrame({"event_id": ["a"]}))
