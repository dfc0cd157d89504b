import math

import numpy as np
import pytest

from models.metrics import interval_scores, paired_difference, paired_mape_difference, valuation_metrics
from models.signals import ABOVE_BAND, BELOW_BAND, IN_BAND, band_position, market_signals, signals


def test_valuation_metrics_on_a_hand_computed_case():
    predicted = np.array([110.0, 90.0, 100.0, 150.0])
    actual = np.array([100.0, 100.0, 100.0, 100.0])
    # relative errors: +0.10, -0.10, 0, +0.50
    m = valuation_metrics(predicted, actual, p10=np.array([90, 95, 80, 120]), p90=np.array([120, 99, 120, 200]))
    assert m["n"] == 4
    assert m["mape"] == pytest.approx(0.175)
    assert m["median_ape"] == pytest.approx(0.10)
    assert m["bias"] == pytest.approx(0.05)  # median of (-0.1, 0, 0.1, 0.5)
    assert m["mean_bias"] == pytest.approx(0.125)  # their mean: (-0.1 + 0 + 0.1 + 0.5) / 4
    assert m["rmse"] == pytest.approx(np.sqrt((100 + 100 + 0 + 2500) / 4))
    assert m["within_10pct"] == pytest.approx(0.75)
    assert m["within_25pct"] == pytest.approx(0.75)
    assert m["band_coverage"] == pytest.approx(0.5)  # 100 in [90,120] and [80,120] only
    # log widths 0.2877, 0.0412, 0.4055, 0.5108: median of the middle two
    assert m["band_width"] == pytest.approx((np.log(120 / 90) + np.log(120 / 80)) / 2)
    # widths plus 10x the misses: 100 over 99 by log(100/99), 100 under 120 by log(1.2)
    widths = np.log(120 / 90) + np.log(99 / 95) + np.log(120 / 80) + np.log(200 / 120)
    assert m["band_score"] == pytest.approx((widths + 10 * np.log(100 / 99) + 10 * np.log(1.2)) / 4)


def test_a_price_exactly_ten_or_twenty_five_percent_off_counts_as_within_at_any_scale():
    # in floats (1.1 - 1) / 1 is 0.10000000000000009 while (55 - 50) / 50 is exactly 0.1
    m = valuation_metrics(np.array([1.1, 0.9, 55.0, 45.0, 1.25, 0.75]), np.array([1.0, 1.0, 50.0, 50.0, 1.0, 1.0]))
    assert m["within_10pct"] == pytest.approx(4 / 6)
    assert m["within_25pct"] == 1.0
    assert valuation_metrics(np.array([1.1000001]), np.array([1.0]))["within_10pct"] == 0.0


def test_the_mean_bias_is_reported_beside_the_median_one():
    """`bias` is the median signed error; one large overvaluation moves the mean, not the median."""
    m = valuation_metrics(np.array([95.0, 98.0, 101.0, 200.0, 50.0]), np.array([100.0, 100.0, 100.0, 100.0, 25.0]))
    # relative errors -0.05, -0.02, +0.01, +1.00, +1.00
    assert m["bias"] == pytest.approx(0.01)
    assert m["mean_bias"] == pytest.approx((-0.05 - 0.02 + 0.01 + 1.0 + 1.0) / 5)


def test_unusable_pairs_are_counted_as_filtered_with_their_reason():
    m = valuation_metrics(np.array([1.0, np.nan, 2.0]), np.array([1.0, 1.0, 0.0]))
    assert (m["n"], m["n_filtered"], m["filtered"]) == (1, 2, {"no_fair_value": 1, "no_price": 1})
    none = valuation_metrics(np.array([np.nan, np.nan]), np.array([1.0, 2.0]))
    assert none == {"n": 0, "n_filtered": 2, "filtered": {"no_fair_value": 2}}


def test_a_pair_without_a_band_is_neither_a_hit_nor_a_miss():
    m = valuation_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([0.5, np.nan]), np.array([1.5, np.nan]))
    assert (m["n"], m["n_without_band"], m["band_coverage"]) == (2, 1, 1.0)
    assert np.isfinite(m["band_width"]) and np.isfinite(m["band_score"])


def test_paired_mape_difference_on_hand_computed_cases():
    actual = np.array([100.0, 100.0, 200.0, 200.0])
    a = np.array([110.0, 90.0, 220.0, 180.0])  # every APE 10 %
    b = np.array([105.0, 95.0, 200.0, 200.0])  # APEs 5, 5, 0, 0 %
    days = np.array([1, 1, 2, 2])
    same = paired_mape_difference(a, a, actual, days)
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    better = paired_mape_difference(a, b, actual, days, draws=500)
    assert better["difference"] == pytest.approx(-0.075)  # (-5 - 5 - 10 - 10) / 4 points
    # Day 1 gains 5 points a sale, day 2 gains 10: every resample lies between the two.
    assert -0.10 <= better["low"] < better["high"] <= -0.05
    assert better["blocks"] == 2 and better["n"] == 4


def test_paired_mape_difference_draws_whole_days_and_skips_unvalued_sales():
    rng = np.random.default_rng(1)
    actual = np.full(400, 100.0)
    days = np.repeat(np.arange(20), 20)
    # A and B differ by a whole day's shift that is +/- 5 points at random: on average nothing.
    shift = np.repeat(rng.choice([-5.0, 5.0], 20), 20)
    a = actual * 1.10
    b = actual * 1.10 + shift
    b[0] = np.nan  # B cannot value one sale: it leaves both sides
    out = paired_mape_difference(a, b, actual, days)
    assert out["n"] == 399
    # Days, not sales, are drawn: the interval is as wide as 20 draws of +/- 5 points allow
    # (sd ~ 5 / sqrt(20) = 1.1 points), far wider than 399 independent sales would give.
    assert out["low"] < out["difference"] < out["high"]
    assert out["high"] - out["low"] > 0.03


def test_interval_score_on_hand_computed_cases():
    p10, p90 = np.array([50.0, 50.0, 50.0]), np.array([200.0, 200.0, 200.0])
    actual = np.array([100.0, 25.0, 400.0])  # inside; half the low end; twice the high end
    width = np.log(4)
    np.testing.assert_allclose(interval_scores(p10, p90, actual),
                               [width, width + 10 * np.log(2), width + 10 * np.log(2)])  # 2 / 0.2 = 10
    np.testing.assert_allclose(interval_scores(p10, p90, actual, alpha=0.5)[1], width + 4 * np.log(2))
    # A band wide enough to hold everything scores worse than a tight one that misses a little.
    tight = interval_scores(np.array([95.0]), np.array([105.0]), np.array([106.0]))
    wide = interval_scores(np.array([10.0]), np.array([1000.0]), np.array([106.0]))
    assert tight[0] < wide[0]


def test_paired_difference_of_any_loss_skips_missing_ones():
    out = paired_difference(np.array([1.0, 2.0, 3.0, np.nan]), np.array([0.5, 1.0, np.inf, 1.0]),
                            np.array([1, 1, 2, 2]), draws=200)
    assert out["n"] == 2 and out["blocks"] == 1
    assert out["difference"] == pytest.approx(-0.75) == out["low"] == out["high"]


def test_signals_follow_the_thresholds():
    fair = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    price = np.array([89.0, 90.0, 95.0, 114.0, 115.0, np.nan])
    assert list(signals(price, fair, 0.10, 0.15)) == ["BUY", "BUY", "HOLD", "HOLD", "SELL", "HOLD"]


def test_market_signals_read_a_buying_ask_then_a_recent_sale_then_any_ask():
    nan = float("nan")
    # fair value 100 everywhere; thresholds 10 % / 15 %; a sale counts up to 30 days old
    cases = [  # ask, last price, its age in days -> signal, basis, deviation
        (80.0, 130.0, 1.0, "BUY", "ask", -0.2),  # an ask under the value wins over a SELL sale
        (130.0, 85.0, 1.0, "BUY", "last_sale", -0.15),  # an ask over it leaves the sale's signal
        (130.0, 85.0, 31.0, "HOLD", "ask", 0.3),  # no recent sale: the ask alone, and it is no BUY
        (nan, 85.0, 30.0, "BUY", "last_sale", -0.15),  # 30 days is still recent
        (nan, 85.0, 30.5, "HOLD", None, nan),  # too old: no market price at all
        (nan, nan, nan, "HOLD", None, nan),  # never sold
        (95.0, 120.0, 2.0, "SELL", "last_sale", 0.2),
    ]
    ask, last, age, want_signal, want_basis, want_deviation = map(list, zip(*cases, strict=True))
    signal, basis, deviation = market_signals(ask, last, age, [100.0] * len(cases), 0.10, 0.15, 30.0)
    assert list(signal) == want_signal and list(basis) == want_basis
    np.testing.assert_allclose(deviation, want_deviation, rtol=1e-12)


def test_a_price_a_hair_under_the_value_deviates_by_zero_not_minus_zero():
    """-0.0 went into the archive as "-0.0" while a database row reads it back 0.0, so the archive
    rebuilt from the rows had another sha256 than the one written."""
    _, _, deviation = market_signals([float("nan")], [99.99999], [0.0], [100.0], 0.1, 0.15, 30.0)
    assert deviation[0] == 0.0 and not np.signbit(deviation[0])


def test_a_deviation_is_answered_to_six_decimals_on_the_side_of_each_threshold_its_signal_is():
    """A fair value within a rounding of a threshold: the deviation answered (and recorded) is the
    judged one to 6 decimals, never one that reads across a threshold the signal did not cross
    (a HOLD at -0.0999996 answered -0.1 reads as a BUY at 10 %), nor short of one it did."""
    nan = float("nan")
    n = 4001
    fair = 100.0 * (1 + np.arange(-(n // 2), n // 2 + 1) * 1e-9)  # 100 +- 2e-4: both sides of each threshold
    for ask, last in ((90.0, nan), (90.0, 100.0), (nan, 115.0), (nan, 90.0), (115.0, 115.0), (115.0, nan)):
        signal, basis, deviation = market_signals(np.full(n, ask), np.full(n, last), np.ones(n), fair, 0.10, 0.15, 30)
        price = np.where(basis == "ask", ask, last)
        assert len(set(signal)) == 2 or ask == 115.0, (ask, last)  # the sweep crosses a threshold
        np.testing.assert_allclose(deviation, price / fair - 1, rtol=0, atol=1.0000001e-6)
        assert (np.round(deviation, 6) == deviation).all()  # what fairvalue.answers.rounded leaves as it is
        read = signals(1 + deviation, np.ones(n), 0.10, 0.15)  # the signal the answered deviation reads
        if ask == 115.0 and last != last:  # an ask alone over the value: HOLD, whatever it reads
            assert set(signal) == {"HOLD"}
            continue
        np.testing.assert_array_equal(np.where(basis == "ask", np.where(read == "BUY", "BUY", "HOLD"), read), signal)


def test_day_oracle_removes_the_days_median_or_the_other_sales_median_by_hand():
    from models.metrics import day_oracle

    # log(fair value / price): day A 0.1, 0.2, 0.6; day B, its only sale, 0.3.
    errors = np.array([0.1, 0.2, 0.6, 0.3])
    price = np.full(4, 50.0)
    days = np.array(["A", "A", "A", "B"])
    got = day_oracle(price * np.exp(errors), price, days)

    def expected(log_errors):
        ape = [abs(math.expm1(e)) for e in log_errors]
        return pytest.approx(sum(ape) / 4), pytest.approx(float(np.median(ape)))

    # day A's median is 0.2; day B's is its own sale.
    assert (got["day_median_removed"]["mape"], got["day_median_removed"]["median_ape"]) == \
        expected([-0.1, 0.0, 0.4, 0.0])
    # the others of 0.1 are 0.2 and 0.6 (median 0.4), of 0.2: 0.1 and 0.6 (0.35), of 0.6: 0.1 and
    # 0.2 (0.15); day B has no other sale, so its error stays.
    assert (got["others_median_removed"]["mape"], got["others_median_removed"]["median_ape"]) == \
        expected([-0.3, -0.15, 0.45, 0.3])
    assert (got["as_is"]["mape"], got["as_is"]["median_ape"]) == expected([0.1, 0.2, 0.6, 0.3])
    assert got["as_is"]["n"] == 4


def test_band_position_counts_the_ends_in_the_band():
    assert [band_position(price, 90.0, 120.0) for price in (89.99, 90.0, 100.0, 120.0, 120.01)] == [
        BELOW_BAND, IN_BAND, IN_BAND, IN_BAND, ABOVE_BAND]
