import numpy as np
import pytest

from models.metrics import valuation_metrics
from models.signals import signals


def test_valuation_metrics_on_a_hand_computed_case():
    predicted = np.array([110.0, 90.0, 100.0, 150.0])
    actual = np.array([100.0, 100.0, 100.0, 100.0])
    # relative errors: +0.10, -0.10, 0, +0.50
    m = valuation_metrics(predicted, actual, p10=np.array([90, 95, 80, 120]), p90=np.array([120, 99, 120, 200]))
    assert m["n"] == 4
    assert m["mape"] == pytest.approx(0.175)
    assert m["median_ape"] == pytest.approx(0.10)
    assert m["bias"] == pytest.approx(0.05)  # median of (-0.1, 0, 0.1, 0.5)
    assert m["rmse"] == pytest.approx(np.sqrt((100 + 100 + 0 + 2500) / 4))
    assert m["within_10pct"] == pytest.approx(0.75)
    assert m["within_25pct"] == pytest.approx(0.75)
    assert m["band_coverage"] == pytest.approx(0.5)  # 100 in [90,120] and [80,120] only


def test_unusable_pairs_are_counted_as_filtered():
    m = valuation_metrics(np.array([1.0, np.nan, 2.0]), np.array([1.0, 1.0, 0.0]))
    assert (m["n"], m["n_filtered"]) == (1, 2)


def test_signals_follow_the_thresholds():
    fair = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    price = np.array([89.0, 90.0, 95.0, 114.0, 115.0, np.nan])
    assert list(signals(price, fair, 0.10, 0.15)) == ["BUY", "BUY", "HOLD", "HOLD", "SELL", "HOLD"]
