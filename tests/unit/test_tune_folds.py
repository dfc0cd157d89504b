"""bench/tune.py's folds: settings are chosen on periods before the reported Q4 2021, never on it."""

from itertools import pairwise

import pandas as pd
import pytest

from bench import tune


def test_every_tuning_fold_ends_by_the_reported_window():
    assert tune.FOLDS
    for name, (start, end) in tune.FOLDS.items():
        assert pd.Timestamp(start) < pd.Timestamp(end) <= tune.REPORTED_WINDOW_START, name


def test_the_monthly_folds_tile_q2_and_q3_without_gaps():
    months = [tune.FOLDS[name] for name in tune.FOLD_SETS["monthly"]]
    assert months[0][0] == tune.FOLDS["q2"][0] and months[-1][1] == tune.FOLDS["q3"][1]
    assert all(previous[1] == following[0] for previous, following in pairwise(months))


def test_a_fold_reaching_the_reported_window_is_refused():
    with pytest.raises(SystemExit, match="never tuned on"):
        tune.fold_values(None, "2021-09-01", "2021-10-02", None)


def test_the_fresh_folds_tile_the_six_months_before_the_monthly_ones():
    months = [tune.FOLDS[name] for name in tune.FOLD_SETS["fresh"]]
    assert len(months) == 6 and months[-1][1] == tune.FOLDS[tune.FOLD_SETS["monthly"][0]][0]
    assert all(previous[1] == following[0] for previous, following in pairwise(months))
    assert not set(tune.FOLD_SETS["fresh"]) & set(tune.FOLD_SETS["monthly"])


def test_the_early_folds_tile_2020_01_to_09_and_overlap_neither_other_set():
    months = [tune.FOLDS[name] for name in tune.FOLD_SETS["early"]]
    assert len(months) == 9 and (months[0][0], months[-1][1]) == ("2020-01-01", "2020-10-01")
    assert months[-1][1] == tune.FOLDS[tune.FOLD_SETS["fresh"][0]][0]
    assert all(previous[1] == following[0] for previous, following in pairwise(months))
    assert not set(tune.FOLD_SETS["early"]) & (set(tune.FOLD_SETS["fresh"]) | set(tune.FOLD_SETS["monthly"]))


@pytest.mark.parametrize("cadence", ["1d", "30m"])
def test_a_fold_sale_is_valued_at_the_tick_the_replay_scores_it_with(cadence):
    """The replay scores a sale with the last tick strictly before it (models/replay.py)."""
    from fairvalue.evaluation import CADENCES
    from models.replay import ticks

    sales = pd.Series(pd.to_datetime(["2021-08-01 00:00:00", "2021-08-01 00:30:00", "2021-08-01 00:31:00",
                                      "2021-08-01 13:09:00", "2021-08-02 00:00:00.5", "2021-08-02 23:59:00"],
                                     format="ISO8601"))
    every_tick = pd.DatetimeIndex(ticks(pd.Timestamp("2021-07-31"), pd.Timestamp("2021-08-03"), CADENCES[cadence]))
    expected = [every_tick[every_tick < t].max() for t in sales]
    assert list(tune.nowcast_times(sales, cadence)) == expected


def test_a_half_hour_tick_values_its_sales_without_the_sales_of_its_hour_known_only_to_the_hour():
    """At --against-cadence 30m the fold valued a 15:40 sale from every sale before 15:30, a sale
    recorded at 15:10 but known only to the hour among them; the replay's tick at 15:30 hides it."""
    from models.estimator import TrainParams, fit
    from models.features import MarketData
    from tests.unit.test_features import synthetic_market

    base = synthetic_market(n_sales=300, seed=6)
    tick = pd.Timestamp("2021-03-10 15:30")
    recorded = pd.DataFrame({"event_id": ["h"], "ts": [pd.Timestamp("2021-03-10 15:10")], "item_key": ["7"],
                             "price": [99.0], "hour_precision": [True]})
    sales = pd.concat([base.sales[base.sales["ts"] < tick.floor("h")].assign(hour_precision=False), recorded],
                      ignore_index=True)
    data = MarketData(base.items, sales, base.market)
    model = fit(data, TrainParams(max_iter=10, band_max_iter=10))
    queries = pd.DataFrame({"item_key": ["7", "7"], "ts": [tick, tick.ceil("h")]})
    values = tune.predict_as_known(model, data, queries)
    assert values.at[0, "last_price"] != 99.0 and values.at[1, "last_price"] == 99.0
    pd.testing.assert_frame_equal(values.iloc[[0]], model.predict(data.before(tick), queries.iloc[[0]]))


def test_the_bundled_market_the_folds_read_loads():
    """bench/tune.py gave load_market [] for its floor and rate files, which it reads as one file
    each: every run failed before its first fold."""
    from fairvalue.settings import get_settings

    data = tune.bundled_market(get_settings())
    assert len(data.sales) > 15_000 and data.market["floor"].notna().sum() > 1_000
