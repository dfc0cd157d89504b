"""Replay scores every sale against the last nowcast published before it."""

from datetime import date

import pandas as pd

from models.estimator import TrainParams
from models.replay import ReplayConfig, replay
from tests.unit.test_features import synthetic_market

PARAMS = TrainParams(max_iter=30, band_max_iter=15, min_samples_leaf=10)


def run(data, **overrides):
    config = ReplayConfig(start=pd.Timestamp("2021-04-01"), end=pd.Timestamp("2021-04-21"),
                          cadence=pd.Timedelta(days=1), retrain_max_age=pd.Timedelta(days=7), params=PARAMS)
    for key, value in overrides.items():
        setattr(config, key, value)
    return replay(data, config)


def test_each_sale_in_the_window_is_scored_once_against_an_earlier_snapshot():
    data = synthetic_market(n_sales=1500, seed=3)
    result = run(data)
    p = result.predictions
    ts = data.sales["ts"]
    in_window = data.sales[(ts >= pd.Timestamp("2021-04-01")) & (ts < pd.Timestamp("2021-04-21"))]
    assert sorted(p["event_id"]) == sorted(in_window["event_id"])
    assert (pd.to_datetime(p["snapshot_published_at"]) < pd.to_datetime(p["timestamp"])).all()
    # The snapshot used is the latest one before the sale: less than one cadence earlier.
    assert ((pd.to_datetime(p["timestamp"]) - pd.to_datetime(p["snapshot_published_at"])) <= pd.Timedelta(days=1)).all()


def test_retraining_follows_the_staleness_rule():
    result = run(synthetic_market(n_sales=1500, seed=3))
    assert [t["model_version"] for t in result.trainings] == [1, 2, 3]  # days 0, 7, 14 of 20
    assert result.predictions["model_version"].max() == 3


def test_sales_after_the_window_change_nothing():
    data = synthetic_market(n_sales=1500, seed=3)
    cut = data.before(pd.Timestamp("2021-04-21 00:00:01"))
    full = run(data).predictions
    truncated = run(cut).predictions
    pd.testing.assert_frame_equal(full.reset_index(drop=True), truncated.reset_index(drop=True))


def test_a_daily_full_snapshot_feeds_signal_history():
    result = run(synthetic_market(n_sales=800, seed=4))
    history = result.signal_history
    assert history["snapshot_time"].nunique() == 20
    assert set(history["signal"]) <= {"BUY", "SELL", "HOLD"}
    assert history.groupby("snapshot_time").size().eq(60).all()


def test_a_source_that_names_none_is_refused_before_any_read():
    """It used to read the bundled files as if `bundled` had been asked for."""
    import pytest

    from fairvalue.evaluation import load_daily, load_market
    from fairvalue.settings import get_settings

    for load in (lambda: load_market(get_settings(), "bogus", [], None, None),
                 lambda: load_daily(get_settings(), "bogus")):
        with pytest.raises(ValueError, match="source must be one of auto, db, bundled"):
            load()


def test_asks_are_valued_by_the_tick_before_them_and_read_by_the_nowcasts():
    """A replay given listings (fairvalue replay --listings): each ask is valued as a sale is,
    the ticks' nowcasts read the asks open then, and the sales' values do not move."""
    from dataclasses import replace

    from fairvalue.evaluation import ask_signals
    from fairvalue.settings import get_settings
    from models.listings import REPLAY_LISTING_COLUMNS, listing_history

    data = synthetic_market(n_sales=1500, seed=3)
    sales = data.sales

    def quiet(item, start, end):  # no sale of the item in [start, end]
        return not ((sales["item_key"] == item) & (sales["ts"] >= start) & (sales["ts"] <= end)).any()

    plain = run(data)
    tick = pd.Timestamp("2021-04-10")
    cheap_at = pd.Timestamp("2021-04-05 09:00")
    cheap = next(k for k in data.items.index if quiet(k, cheap_at, cheap_at + pd.Timedelta(hours=2)))
    without = plain.signal_history.set_index(["snapshot_time", "item_id"])["signal"]
    read = next(k for k in data.items.index if quiet(k, tick - pd.Timedelta(minutes=1), tick)
                and without[(tick, k)] != "BUY")
    sale = sales[(sales["ts"] > pd.Timestamp("2021-04-12 04:00")) & (sales["ts"] < pd.Timestamp("2021-04-12 20:00"))]
    sale = next(row for row in sale.itertuples() if quiet(row.item_key, row.ts - pd.Timedelta(hours=3),
                                                           row.ts - pd.Timedelta(seconds=1)))
    events = pd.DataFrame([
        ("cheap", cheap, "m", cheap_at, 0.01, cheap_at + pd.Timedelta(hours=2)),  # expires unsold
        ("read", read, "m", tick - pd.Timedelta(minutes=1), 0.01, pd.NaT),  # open at the tick
        ("taken", sale.item_key, "m", sale.ts - pd.Timedelta(hours=3), sale.price, pd.NaT),  # the sale fills it
    ], columns=list(REPLAY_LISTING_COLUMNS)).astype({"ts": "datetime64[ns]", "expires_at": "datetime64[ns]"})
    listed = replace(data, listings=listing_history(events, sales))

    result = run(listed)

    asks = result.asks.set_index("event_id")
    assert sorted(asks.index) == ["cheap", "read", "taken"]
    published = pd.to_datetime(asks["snapshot_published_at"])
    assert (published < asks["timestamp"]).all() and (asks["timestamp"] - published <= pd.Timedelta(days=1)).all()
    scored = result.predictions.set_index("event_id").loc[sale.event_id]
    if scored["snapshot_published_at"] == asks.loc["taken", "snapshot_published_at"]:  # same tick: same value
        assert scored["fair_value"] == asks.loc["taken", "fair_value"]
    for column in ("fair_value", "p10", "p90"):  # asks change signals, never values
        pd.testing.assert_series_equal(plain.predictions[column], result.predictions[column])
    history = result.signal_history.set_index(["snapshot_time", "item_id"])["signal"]
    assert history[(tick, read)] == "BUY"  # an ask at 0.01 was open at the tick; without it, no BUY
    report = ask_signals(listed, result, pd.Timestamp("2021-04-01"), pd.Timestamp("2021-04-21"), get_settings())
    outcome = report["outcomes_by_signal"]
    assert report["asks_in_window"] == report["asks_valued"] == 3 and report["listings_refused"] == {}
    # A take is known as far as the sales go; the time in UTC with its Z, as the API writes times.
    assert report["settled_by"] == sales["ts"].max().isoformat() + "Z"
    assert report["complete_from"] is None  # no store's retention behind these listings
    assert outcome["BUY"]["ended"] >= 1  # the cheap ask expired unsold
    taken_as = "BUY" if sale.price <= 0.9 * asks.loc["taken", "fair_value"] else "HOLD"
    # The ask at 0.01 that never expires is taken by the item's next sale at any price (sold at the ask or above).
    read_sold = not quiet(read, tick, tick + pd.Timedelta(days=30))
    assert outcome[taken_as]["taken"] == 1 + (taken_as == "BUY" and read_sold)
    assert outcome["BUY"]["taken"] + outcome["HOLD"]["taken"] == 1 + read_sold
    assert ask_signals(data, plain, pd.Timestamp("2021-04-01"), pd.Timestamp("2021-04-21"), get_settings()) is None


def test_a_listings_file_conflicting_with_a_stored_event_keeps_the_stored_one_and_says_so(tmp_path):
    from fairvalue.evaluation import with_listings
    from fairvalue.settings import get_settings
    from models.listings import REPLAY_LISTING_COLUMNS

    data = synthetic_market(n_sales=200, seed=5)
    stored = pd.DataFrame([("a", "1", "m", pd.Timestamp("2021-04-02"), 5.0, pd.NaT)],
                          columns=list(REPLAY_LISTING_COLUMNS)).astype({"expires_at": "datetime64[ns]"})
    given = tmp_path / "listings.csv"
    given.write_text("event_id,timestamp,item_id,price,source\n"
                     "a,2021-04-02T00:00:00Z,1,6,m\n"  # the stored event, another price
                     "b,2021-04-03T00:00:00Z,2,7,m\n"
                     "c,2021-04-03T00:00:00Z,nope,7,m\n")
    book = with_listings(data, stored, [given], get_settings(), pd.Timestamp("2021-01-01"),
                         first_day=date(2017, 6, 22)).listings
    assert book.events.set_index("event_id")["price"].to_dict() == {"a": 5.0, "b": 7.0}
    assert book.refused == {"duplicate_event_conflict": 1, "unknown_item": 1}
    assert book.complete_from == pd.Timestamp("2021-01-01")


def test_the_export_names_both_signals_and_says_how_each_value_was_made(tmp_path):
    """The export's one `signal` was the snapshot's published signal, while the report's signals
    and the backtest read the sale's own price against the value: filtering it on BUY gave 40
    rows where the backtest had 168 trades. Both now, named apart; and the floor the value was
    computed with and how precisely the sale's time is known."""
    from dataclasses import replace

    from fairvalue.evaluation import Evaluation
    from models.replay import EXPORT_COLUMNS
    from models.signals import signals

    data = synthetic_market(n_sales=1500, seed=3)
    hourly = data.sales["ts"] >= pd.Timestamp("2021-04-10")  # as the 2021-04-05+ source's sales
    data = replace(data, sales=data.sales.assign(hour_precision=hourly.to_numpy()))
    result = run(data)
    path = tmp_path / "predictions.csv"
    Evaluation(result, {}).export(path)
    rows = pd.read_csv(path)

    assert list(rows.columns) == EXPORT_COLUMNS
    assert {"published_signal", "sale_signal", "floor", "time_precision"} <= set(rows.columns)
    assert "signal" not in rows.columns
    own = signals(result.predictions["price"], result.predictions["fair_value"], 0.10, 0.15)
    assert list(result.predictions["sale_signal"]) == list(own)
    assert (result.predictions["sale_signal"] != result.predictions["published_signal"]).any()
    late = pd.to_datetime(rows["timestamp"]).dt.tz_localize(None) >= pd.Timestamp("2021-04-10")
    assert set(rows["time_precision"][late]) == {"hour"} and set(rows["time_precision"][~late]) == {"second"}
    # fair_value = floor x exp(p50): the floor is the level the value was computed on, positive
    assert (rows["floor"] > 0).all()


def test_the_window_is_from_inclusive_to_exclusive_with_no_look_ahead_at_its_start():
    """`--to` is exclusive, as the CLI's help and its pre-check say, but the replay scored
    (from, to]: a sale exactly at --to was scored and one exactly at --from was not. A sale at
    --from came with the first tick, so it is scored against a nowcast published before it."""
    from dataclasses import replace

    from fairvalue.evaluation import report
    from fairvalue.settings import get_settings

    data = synthetic_market(n_sales=1500, seed=3)
    start, end = pd.Timestamp("2021-04-01"), pd.Timestamp("2021-04-21")
    edges = pd.DataFrame({"event_id": ["at_from", "at_to"], "ts": [start, end], "item_key": ["1", "2"],
                          "price": [10.0, 10.0]}).astype({"ts": "datetime64[ns]"})
    sales = pd.concat([data.sales, edges]).sort_values("ts", kind="stable").reset_index(drop=True)
    data = replace(data, sales=sales)

    result = run(data)

    p = result.predictions.set_index("event_id")
    assert "at_from" in p.index and "at_to" not in p.index
    published = pd.to_datetime(p["snapshot_published_at"])
    assert (published < pd.to_datetime(p["timestamp"])).all()  # no look-ahead, the edge included
    assert published["at_from"] == start - pd.Timedelta(days=1)
    # The window's first model is still trained at --from, and retrained a week on from it.
    assert [t["trained_at"] for t in result.trainings] == [start - pd.Timedelta(days=1), start,
                                                           start + pd.Timedelta(days=7),
                                                           start + pd.Timedelta(days=14)]
    assert result.signal_history["snapshot_time"].min() == start
    ts = data.sales["ts"]
    assert sorted(p.index) == sorted(data.sales["event_id"][(ts >= start) & (ts < end)])
    figures = report(data, result, start, end, "1d", get_settings())
    assert figures["sales_in_window"] == figures["model"]["n"] == len(p)
