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
