"""Replay scores every sale against the last nowcast published before it."""

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
    in_window = data.sales[(ts > pd.Timestamp("2021-04-01")) & (ts <= pd.Timestamp("2021-04-21"))]
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
