"""A nowcast of a market silent for longer than the staleness limit values it as of its last
input plus that limit, not extrapolated to now (models.nowcast.valuation_moment)."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from models.estimator import TrainParams, fit
from models.features import MarketData
from models.nowcast import valuation_moment, value_all_items
from tests.unit.test_features import synthetic_market

DATA = synthetic_market()
LAST_SALE = DATA.sales["ts"].max()
LAST_FLOOR_KNOWN = DATA.market["day"].max() + pd.Timedelta(days=1)  # 2021-05-01: the last day is over


def test_a_trading_market_is_valued_when_asked():
    t = pd.Timestamp("2021-03-01 12:00")
    assert valuation_moment(DATA, t, 7) == t
    assert valuation_moment(DATA, LAST_FLOOR_KNOWN + pd.Timedelta(days=6), 7) == LAST_FLOOR_KNOWN + pd.Timedelta(days=6)


def test_a_silent_market_is_valued_a_limit_after_its_last_input():
    years_later = pd.Timestamp("2026-12-04 05:00")
    assert LAST_FLOOR_KNOWN > LAST_SALE  # the floor is the later input here
    assert valuation_moment(DATA, years_later, 7) == LAST_FLOOR_KNOWN + pd.Timedelta(days=7)
    assert valuation_moment(DATA, years_later, 0) == years_later  # 0: always now
    assert valuation_moment(DATA, years_later, None) == years_later
    # Without the floor rows the last sale is the last input.
    no_floor = MarketData(DATA.items, DATA.sales, DATA.market.iloc[:0])
    assert valuation_moment(no_floor, years_later, 7) == LAST_SALE + pd.Timedelta(days=7)


def test_only_inputs_before_the_asked_moment_count():
    # A market silent from 2021-02-01 to 2021-03-15: asked on 03-10, the moment is a week after
    # its last input whatever came after 03-10 (an explanation reads the snapshot's moment again
    # from data loaded later).
    gap_start, gap_end = pd.Timestamp("2021-02-01"), pd.Timestamp("2021-03-15")
    sales = DATA.sales[(DATA.sales["ts"] < gap_start) | (DATA.sales["ts"] >= gap_end)]
    market = DATA.market[(DATA.market["day"] < gap_start - pd.Timedelta(days=1)) | (DATA.market["day"] >= gap_end)]
    gappy = MarketData(DATA.items, sales, market)
    asked = pd.Timestamp("2021-03-10")
    moment = valuation_moment(gappy, asked, 7)
    assert moment == sales["ts"][sales["ts"] < gap_start].max() + pd.Timedelta(days=7)
    assert valuation_moment(gappy.before(asked), asked, 7) == moment


def test_values_of_a_silent_market_stay_those_of_its_last_days():
    model = fit(DATA, TrainParams(max_iter=20, band_max_iter=10, min_samples_leaf=10))
    limit = LAST_FLOOR_KNOWN + pd.Timedelta(days=7)
    at_limit = value_all_items(model, DATA, limit, 0.1, 0.15, 30)
    years_later = value_all_items(model, DATA, pd.Timestamp("2026-12-04"), 0.1, 0.15, 30, stale_after_days=7)
    extrapolated = value_all_items(model, DATA, pd.Timestamp("2026-12-04"), 0.1, 0.15, 30)
    pd.testing.assert_frame_equal(years_later, at_limit)
    assert not extrapolated["fair_value"].equals(at_limit["fair_value"])  # the limit is what kept them


def test_a_day_of_eth_usd_alone_is_no_floor():
    """Days with an ETH/USD rate and no floor kept a silent market live (the bundled 2018 has two such
    week-long gaps in its sales and floor, every day of which has a rate)."""
    rates = pd.DataFrame({"day": pd.date_range(LAST_FLOOR_KNOWN, "2022-05-31"), "floor": float("nan"),
                          "eth_usd": 3000.0})
    with_rates = MarketData(DATA.items, DATA.sales, pd.concat([DATA.market, rates], ignore_index=True))
    years_later = pd.Timestamp("2026-12-04 05:00")
    assert valuation_moment(with_rates, years_later, 7) == valuation_moment(DATA, years_later, 7) \
        == LAST_FLOOR_KNOWN + pd.Timedelta(days=7)


def test_a_nowcast_does_not_read_a_sale_whose_hour_is_not_over():
    """A sale known only to the hour, recorded at 15:10, may have come at 15:45: a nowcast asked for
    15:30 (`fairvalue nowcast --as-of`) read it, as its explanation did, where the replay's tick at
    15:30 does not. Both now value from the market as known at 15:30."""
    t = pd.Timestamp("2021-03-10 15:30")
    sales = DATA.sales[DATA.sales["ts"] < t.floor("h")].assign(hour_precision=False)
    recorded = pd.DataFrame({"event_id": ["h"], "ts": [pd.Timestamp("2021-03-10 15:10")], "item_key": ["7"],
                             "price": [99.0], "hour_precision": [True]})
    held = MarketData(DATA.items, pd.concat([sales, recorded], ignore_index=True), DATA.market)
    model = fit(held, TrainParams(max_iter=20, band_max_iter=10, min_samples_leaf=10))
    nowcast = value_all_items(model, held, t, 0.1, 0.15, 30)
    pd.testing.assert_frame_equal(nowcast, value_all_items(model, held.before(t), t, 0.1, 0.15, 30))
    assert nowcast.set_index("item_key").at["7", "last_price"] != 99.0
    assert held.known_at(t.ceil("h")) is held  # once its hour is over it counts, and nothing is copied
    assert value_all_items(model, held, t.ceil("h"), 0.1, 0.15, 30).set_index("item_key").at["7", "last_price"] == 99.0


def test_a_sale_known_at_t_does_not_carry_a_hidden_one_in_its_context():
    """The market before 15:30 reused the context computed on every sale: a second-precision sale at
    15:20 had its excess premium read with a sale recorded at 15:10, known only to the hour, in its
    week, and the features at 15:30 saw the hidden sale through it."""
    hour = pd.Timestamp("2021-03-10 15:00")
    sales = DATA.sales[DATA.sales["ts"] < hour].assign(hour_precision=False)
    extra = pd.DataFrame({"event_id": ["A", "B"], "ts": [hour + pd.Timedelta(minutes=m) for m in (10, 20)],
                          "item_key": ["5", "6"], "price": [500.0, 12.0], "hour_precision": [True, False]})
    full = MarketData(DATA.items, pd.concat([sales, extra], ignore_index=True), DATA.market)
    full.context()  # computed once on every sale, as a replay does before its ticks
    t = hour + pd.Timedelta(minutes=30)
    sliced = full.before(t)
    fresh = MarketData(sliced.items, sliced.sales, sliced.market)
    assert "A" not in set(sliced.sales["event_id"])
    pd.testing.assert_frame_equal(sliced.context(), fresh.context())


def test_a_live_moment_is_asked_of_the_model_at_nanoseconds_with_the_same_values():
    """pipeline.nowcast's moment is the database's clock, a Timestamp in microseconds: the query
    frame held it so, and features.naive_times converted the column (8 ms a 10k nowcast) where one
    at nanoseconds is copied. The values are those of the same moment given at nanoseconds."""
    class Recording:  # the fitted model, with the query frames it is asked
        def __init__(self, model):
            self.model, self.asked = model, []

        def predict(self, data, queries, threads=None):
            self.asked.append(queries)
            return self.model.predict(data, queries, threads)

    live = pd.Timestamp(datetime(2021, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)).tz_convert("UTC").tz_localize(None)
    assert live.unit == "us"  # as pipeline.nowcast makes it
    model = Recording(fit(DATA, TrainParams(max_iter=20, band_max_iter=10, min_samples_leaf=10)))
    values = value_all_items(model, DATA, live, 0.1, 0.15, 30)
    (queries,) = model.asked
    assert queries["ts"].dtype == np.dtype("datetime64[ns]") and (queries["ts"] == live).all()
    pd.testing.assert_frame_equal(values, value_all_items(model.model, DATA, live.as_unit("ns"), 0.1, 0.15, 30))
