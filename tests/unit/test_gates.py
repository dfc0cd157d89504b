import json

import numpy as np
import pandas as pd
import pytest

from models.diagnostics import price_band, segment_metrics
from models.gates import Evaluation, GateConfig, decide, sanity

HARD_CHECKS = ["sanity_finite", "sanity_positive", "sanity_band_order", "sanity_monotone_in_floor", "eval_n",
               "bias", "band_coverage", "beats_floor", "segments"]


def _segments(mape_alien: float = 0.30, n_alien: int = 40, mape_male: float = 0.10, n_male: int = 60):
    return pd.DataFrame({"segment": ["type", "type"], "value": ["Alien", "Male"], "n": [n_alien, n_male],
                         "mape": [mape_alien, mape_male]})


def _eval(name="contender", mape=0.10, n=100, bias=0.0, coverage=0.80, segments=None, **sanity_overrides):
    metrics = {"n": n, "n_filtered": 0, "mape": mape, "median_ape": mape, "bias": bias, "rmse": 1.0,
               "within_10pct": 0.5, "within_25pct": 0.9}
    if coverage is not None:
        metrics["band_coverage"] = coverage
    s = {"n_predictions": n, "n_nan": 0, "n_nonpositive": 0, "n_band_order": 0, "monotone_in_floor": True}
    s.update(sanity_overrides)
    return Evaluation(name, metrics, _segments() if segments is None else segments, s)


FLOOR = {"n": 100, "mape": 0.30, "bias": -0.2}


def test_a_clean_contender_better_than_the_champion_is_promoted():
    d = decide(_eval(mape=0.10), _eval("champion", mape=0.12), FLOOR, GateConfig())
    assert d.decision == "promote"
    assert d.failed == []
    assert [c["name"] for c in d.checks] == HARD_CHECKS + ["beats_champion"]
    assert all(c["passed"] for c in d.checks)


@pytest.mark.parametrize(
    ("failing", "contender", "floor"),
    [
        ("sanity_finite", _eval(n_nan=1), FLOOR),
        ("sanity_positive", _eval(n_nonpositive=3), FLOOR),
        ("sanity_band_order", _eval(n_band_order=2), FLOOR),
        ("sanity_monotone_in_floor", _eval(monotone_in_floor=False), FLOOR),
        ("eval_n", _eval(n=49), FLOOR),
        ("bias", _eval(bias=0.06), FLOOR),
        ("bias", _eval(bias=-0.06), FLOOR),
        ("band_coverage", _eval(coverage=0.69), FLOOR),
        ("band_coverage", _eval(coverage=0.91), FLOOR),
        ("band_coverage", _eval(coverage=None), FLOOR),
        ("beats_floor", _eval(mape=0.10), {"n": 100, "mape": 0.10}),  # equal to the floor does not beat it
        ("beats_floor", _eval(mape=0.10), None),  # no floor baseline: fails closed
        ("segments", _eval(segments=_segments(mape_alien=0.34)), FLOOR),  # 0.34 > 0.30 * 1.1
    ],
)
def test_each_hard_check_failing_alone_rejects_and_is_named(failing, contender, floor):
    d = decide(contender, _eval("champion", mape=0.12), floor, GateConfig())
    assert d.decision == "reject"
    assert d.failed == [failing]
    assert failing in d.reason
    assert d.reason.startswith("Rejected because these checks failed")


def test_a_hard_failure_rejects_even_without_a_champion():
    d = decide(_eval(bias=0.2), None, FLOOR)
    assert (d.decision, d.failed) == ("reject", ["bias"])


def test_hard_check_thresholds_are_inclusive_and_configurable():
    for contender in (_eval(bias=0.05), _eval(bias=-0.05), _eval(coverage=0.70), _eval(coverage=0.90),
                      _eval(n=50), _eval(segments=_segments(mape_alien=0.33))):
        assert decide(contender, _eval("champion", mape=0.12), FLOOR).failed == []
    loose = GateConfig(max_abs_bias=0.10, coverage_bounds=(0.5, 0.95), min_eval_n=10, segment_tolerance=0.5)
    d = decide(_eval(bias=0.09, coverage=0.55, n=12, segments=_segments(mape_alien=0.44)),
               _eval("champion", mape=0.12), FLOOR, loose)
    assert d.failed == []
    assert decide(_eval(coverage=None), None, FLOOR, GateConfig(coverage_bounds=None)).decision == "promote"


def test_floor_check_can_be_disabled_but_its_numbers_are_kept():
    worse_than_floor = {"n": 100, "mape": 0.05}
    assert decide(_eval(), None, worse_than_floor, GateConfig(must_beat_floor=True)).failed == ["beats_floor"]
    d = decide(_eval(), None, worse_than_floor, GateConfig(must_beat_floor=False))
    assert d.decision == "promote"
    floor_check = next(c for c in d.checks if c["name"] == "beats_floor")
    assert (floor_check["value"], floor_check["threshold"]) == (0.10, 0.05)


def test_small_segments_are_not_compared():
    # Alien is far worse, but with fewer than min_segment_n sales on either side it is noise.
    few_contender = _eval(segments=_segments(mape_alien=0.90, n_alien=29))
    assert decide(few_contender, _eval("champion", mape=0.12), FLOOR).decision == "promote"
    few_champion = _eval("champion", mape=0.12, segments=_segments(n_alien=29))
    assert decide(_eval(segments=_segments(mape_alien=0.90)), few_champion, FLOOR).decision == "promote"
    # ... and with n = min_segment_n on both sides it is.
    assert decide(_eval(segments=_segments(mape_alien=0.90, n_alien=30)),
                  _eval("champion", mape=0.12, segments=_segments(n_alien=30)), FLOOR).failed == ["segments"]
    assert decide(_eval(segments=_segments(mape_alien=0.90, n_alien=30)),
                  _eval("champion", mape=0.12, segments=_segments(n_alien=30)), FLOOR,
                  GateConfig(min_segment_n=31)).failed == []


def test_segments_from_segment_metrics_are_matched_by_segmentation_and_value():
    rng = np.random.default_rng(0)
    actual = rng.uniform(20, 400, 200)
    types = pd.Series(np.where(np.arange(200) < 100, "Alien", "Male"))
    good = actual * 1.02
    bad_alien = np.where(types == "Alien", actual * 1.5, actual * 1.02)  # only Alien is broken
    band = pd.DataFrame({"type": types, "price_band": price_band(actual).array})
    champion = _eval("champion", mape=0.12, segments=segment_metrics(good, actual, band))
    d = decide(_eval(segments=segment_metrics(bad_alien, actual, band)), champion, FLOOR)
    assert d.failed == ["segments"]
    assert "type=Alien" in d.reason
    assert "type=Male" not in d.reason
    rows = {(r["segment"], str(r["value"])): r for r in d.numbers["segments"]}
    assert rows[("type", "Alien")]["mape_contender"] == pytest.approx(0.5)
    assert rows[("type", "Alien")]["mape_champion"] == pytest.approx(0.02)
    assert decide(_eval(segments=segment_metrics(good, actual, band)), champion, FLOOR).failed == []


@pytest.mark.parametrize(
    ("contender_mape", "decision"),
    [
        (0.080, "promote"),
        (0.098, "promote"),  # exactly champion * (1 - margin)
        (0.0981, "shadow"),
        (0.0999, "shadow"),
        (0.100, "reject"),  # equal is not better
        (0.110, "reject"),
    ],
)
def test_promote_shadow_reject_boundaries(contender_mape, decision):
    d = decide(_eval(mape=contender_mape), _eval("champion", mape=0.10), FLOOR, GateConfig(mape_margin=0.02))
    assert d.decision == decision
    assert d.failed == []
    beats = next(c for c in d.checks if c["name"] == "beats_champion")
    assert beats["passed"] is (decision == "promote")
    if decision == "reject":
        assert "not better than the champion" in d.reason


def test_shadow_disabled_rejects_a_contender_better_by_less_than_the_margin():
    d = decide(_eval(mape=0.099), _eval("champion", mape=0.10), FLOOR, GateConfig(shadow_enabled=False))
    assert d.decision == "reject"
    assert "margin" in d.reason


def test_no_champion_promotes():
    d = decide(_eval(mape=0.25), None, FLOOR)
    assert d.decision == "promote"
    assert "no champion" in d.reason
    assert d.numbers["champion"] is None


def test_a_champion_without_a_usable_mape_is_replaced():
    d = decide(_eval(), Evaluation("champion", {"n": 0}, pd.DataFrame(), {}), FLOOR)
    assert d.decision == "promote"
    assert "no usable MAPE" in d.reason


def test_missing_numbers_fail_closed():
    d = decide(Evaluation("contender", {"n": 0}, pd.DataFrame(), {}), None, FLOOR)
    assert d.decision == "reject"
    assert set(d.failed) == {"sanity_finite", "sanity_positive", "sanity_band_order", "sanity_monotone_in_floor",
                             "eval_n", "bias", "band_coverage", "beats_floor"}


def test_every_number_is_recorded_and_json_friendly():
    contender, champion = _eval(mape=0.099, bias=0.01), _eval("champion", mape=0.10)
    d = decide(contender, champion, FLOOR, GateConfig())
    out = d.as_dict()
    json.dumps(out, allow_nan=False)
    assert out["decision"] == "shadow"
    checks = {c["name"]: c for c in out["checks"]}
    for c in out["checks"]:
        assert set(c) == {"name", "passed", "value", "threshold", "detail", "hard"}
    assert (checks["eval_n"]["value"], checks["eval_n"]["threshold"]) == (100, 50)
    assert (checks["bias"]["value"], checks["bias"]["threshold"]) == (0.01, 0.05)
    assert (checks["band_coverage"]["value"], checks["band_coverage"]["threshold"]) == (0.80, [0.70, 0.90])
    assert (checks["beats_floor"]["value"], checks["beats_floor"]["threshold"]) == (0.099, 0.30)
    assert checks["segments"]["value"] == pytest.approx(1.0)  # worst contender / champion segment MAPE
    assert checks["segments"]["threshold"] == pytest.approx(1.1)
    assert checks["beats_champion"]["value"] == 0.099
    assert checks["beats_champion"]["threshold"] == pytest.approx(0.098)
    assert checks["beats_champion"]["passed"] is False
    numbers = out["numbers"]
    assert numbers["contender"]["metrics"] == contender.metrics
    assert numbers["champion"]["metrics"] == champion.metrics
    assert numbers["contender"]["sanity"] == contender.sanity
    assert numbers["floor_baseline"] == FLOOR
    assert numbers["champion_mape_needed"] == pytest.approx(0.098)
    assert numbers["config"]["mape_margin"] == 0.02
    assert [(r["segment"], r["value"], r["mape_contender"], r["mape_champion"]) for r in numbers["segments"]] == [
        ("type", "Alien", 0.30, 0.30), ("type", "Male", 0.10, 0.10)]


def test_sanity_counts():
    fair = np.array([100.0, np.nan, np.inf, 0.0, -5.0, 50.0, 80.0, 90.0])
    p10 = np.array([90.0, 1.0, 1.0, -1.0, -6.0, 60.0, np.nan, 80.0])
    p90 = np.array([110.0, 2.0, 2.0, 1.0, 1.0, 70.0, 100.0, 85.0])
    s = sanity(fair, p10, p90, monotone_in_floor=False)
    # nan: the NaN and inf fair values and the NaN p10; nonpositive: 0 and -5;
    # band order: 50 below [60, 70] and 90 above [80, 85].
    assert s == {"n_predictions": 8, "n_nan": 3, "n_nonpositive": 2, "n_band_order": 2, "monotone_in_floor": False}
    assert sanity(np.array([1.0, 2.0]), None, None, True)["n_band_order"] == 0
    with pytest.raises(ValueError):
        sanity(np.array([1.0, 2.0]), np.array([1.0]), np.array([2.0]), True)
