"""Drift: PSI, KS and chi-square per feature, prediction drift, and the report (dict and HTML)."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from models.drift import chi2_test, column_kind, drift_report, feature_drift, prediction_drift, psi


def rng(seed=0):
    return np.random.default_rng(seed)


def test_psi_of_identical_samples_is_zero_and_of_a_resample_is_small():
    x = rng(0).normal(size=2000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, rng(1).normal(size=2000)) < 0.05


def test_psi_of_a_shifted_normal_is_clearly_above_the_threshold():
    r = rng(2)
    value = psi(r.normal(0, 1, 2000), r.normal(1, 1, 2000))
    assert value > 0.5  # about 1 for a one-sigma shift


def test_psi_on_a_hand_computed_two_bin_case():
    # reference median 2.5 -> bins (-inf, 2.5], (2.5, inf): reference 1/2, 1/2; current 3/4, 1/4
    value = psi([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 4.0], bins=2)
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)  # = ln(3) / 4
    assert value == pytest.approx(expected)
    assert value == pytest.approx(math.log(3) / 4)


def test_an_empty_bin_counts_with_the_epsilon_share():
    value = psi([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0], bins=2, eps=1e-4)
    expected = (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert value == pytest.approx(expected)


def test_binary_psi_uses_category_shares():
    ref = np.array([0] * 50 + [1] * 50)
    cur = np.array([0] * 20 + [1] * 80)
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.8 - 0.5) * math.log(0.8 / 0.5)
    assert column_kind(ref, cur) == "binary"
    assert psi(ref, cur) == pytest.approx(expected)


def test_missing_values_form_their_own_bin():
    x = rng(3).normal(size=1000)
    with_gaps = x.copy()
    with_gaps[::2] = np.nan  # same distribution of the values, half of them missing
    assert psi(x, x[1::2]) < 0.05
    assert psi(x, with_gaps) > 1.0


def test_a_constant_reference_still_detects_a_new_value():
    assert psi(np.full(100, 5.0), np.full(100, 5.0)) == pytest.approx(0.0)
    assert psi(np.full(100, 5.0), np.full(100, 6.0)) > 1.0
    assert psi(np.full(100, 5.0), np.full(100, 4.0)) > 1.0


def test_ks_detects_a_mean_shift_but_not_a_resample():
    r = rng(4)
    ref = pd.DataFrame({"x": r.normal(0, 1, 500)})
    shifted = pd.DataFrame({"x": r.normal(0.4, 1, 500)})
    same = pd.DataFrame({"x": r.normal(0, 1, 500)})
    moved = feature_drift(ref, shifted).iloc[0]
    assert (moved["kind"], moved["test"]) == ("numeric", "ks")
    assert moved["p_value"] < 1e-6 and moved["drifted"]
    still = feature_drift(ref, same).iloc[0]
    assert still["p_value"] > 0.05 and still["psi"] < 0.1 and not still["drifted"]


def test_chi_square_flags_a_binary_column_whose_share_changes():
    ref = pd.DataFrame({"trait:Cap": np.r_[np.ones(120), np.zeros(280)]})  # 30%
    cur = pd.DataFrame({"trait:Cap": np.r_[np.ones(200), np.zeros(200)]})  # 50%
    row = feature_drift(ref, cur).iloc[0]
    assert (row["kind"], row["test"]) == ("binary", "chi2")
    assert row["p_value"] < 1e-6 and row["drifted"]
    assert (row["mean_ref"], row["mean_cur"]) == pytest.approx((0.3, 0.5))
    same = feature_drift(ref, ref.sample(frac=1.0, random_state=0)).iloc[0]
    assert same["p_value"] > 0.5 and not same["drifted"]


def test_categorical_columns_use_chi_square_and_category_psi():
    ref = pd.DataFrame({"type": ["Human"] * 90 + ["Zombie"] * 10})
    cur = pd.DataFrame({"type": ["Human"] * 50 + ["Zombie"] * 40 + ["Ape"] * 10})
    row = feature_drift(ref, cur).iloc[0]
    assert (row["kind"], row["test"]) == ("categorical", "chi2")
    assert row["psi"] > 0.2 and row["p_value"] < 0.01 and row["drifted"]


def test_constant_all_missing_and_empty_columns_do_not_crash():
    ref = pd.DataFrame({"const": np.zeros(50), "gone": np.full(50, np.nan), "ok": np.linspace(0, 1, 50)})
    cur = pd.DataFrame({"const": np.zeros(40), "gone": np.full(40, np.nan), "ok": np.linspace(0, 1, 40)})
    table = feature_drift(ref, cur).set_index("feature")
    assert table.loc["const", "psi"] == pytest.approx(0.0)
    assert math.isnan(table.loc["const", "p_value"])  # a single category: chi-square skipped
    assert math.isnan(table.loc["gone", "p_value"]) and table.loc["gone", "missing_cur"] == 1.0
    assert not table["drifted"].any()
    empty = feature_drift(ref, cur.iloc[:0]).set_index("feature")
    assert empty["psi"].isna().all() and not empty["drifted"].any()
    assert chi2_test([], []) == (pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True))
    assert feature_drift(ref, cur, columns=[]).empty


def test_small_windows_are_not_flagged():
    ref = pd.DataFrame({"x": np.arange(10.0)})
    cur = pd.DataFrame({"x": np.arange(10.0) + 100})
    row = feature_drift(ref, cur, min_samples=30).iloc[0]
    assert row["psi"] > 1 and not row["drifted"]
    assert feature_drift(ref, cur, min_samples=5).iloc[0]["drifted"]


def test_table_is_sorted_by_psi_and_skips_context_columns():
    r = rng(5)
    ref = pd.DataFrame({"a": r.normal(0, 1, 300), "b": r.normal(0, 1, 300), "floor": r.normal(0, 1, 300)})
    cur = pd.DataFrame({"a": r.normal(0.2, 1, 300), "b": r.normal(2, 1, 300), "floor": r.normal(5, 1, 300)})
    table = feature_drift(ref, cur, psi_threshold=10.0, p_threshold=1e-300)
    assert list(table["feature"]) == ["b", "a"]
    assert not table["drifted"].any()  # thresholds are honoured


def test_prediction_drift_on_log_predictions():
    r = rng(6)
    ref = np.exp(r.normal(4, 0.5, 800))
    up = prediction_drift(ref, ref[:400] * 1.5)
    assert up["psi"] > 0.2 and up["ks_p_value"] < 1e-6 and up["drifted"]
    assert up["mean_shift"] == pytest.approx(math.log(1.5), abs=0.1)
    same = prediction_drift(ref, np.exp(r.normal(4, 0.5, 800)))
    assert same["psi"] < 0.1 and not same["drifted"]
    with_bad = prediction_drift(ref, np.r_[ref[:100], 0.0, -1.0, np.nan])
    assert with_bad["n_cur"] == 100 and with_bad["missing_cur"] == pytest.approx(3 / 103)


def drifting_frames(n=300, seed=7):
    r = rng(seed)
    ref = pd.DataFrame(
        {
            "trait:3D <Glasses>": (r.random(n) < 0.2).astype(float),
            "accessory_count": r.integers(0, 8, n).astype(float),
            "market_premium_7d": r.normal(0.1, 0.1, n),
            "log_eth_usd": r.normal(7, 0.1, n),
            "last_sale_at": pd.Timestamp("2021-01-01") + pd.to_timedelta(r.uniform(0, 100, n), unit="D"),
        }
    )
    cur = ref.copy()
    cur["market_premium_7d"] += 0.3
    cur["log_eth_usd"] += 1.0
    cur["trait:3D <Glasses>"] = (r.random(n) < 0.6).astype(float)
    return ref, cur


def test_report_dict_is_json_friendly_and_summarises_the_table():
    ref, cur = drifting_frames()
    report = drift_report(ref, cur, reference_pred=np.full(len(ref), 10.0), current_pred=np.full(len(cur), 20.0))
    d = report.as_dict()
    json.dumps(d, allow_nan=False)
    s = d["summary"]
    assert (s["n_ref"], s["n_cur"], s["n_features"]) == (300, 300, 4)  # last_sale_at is a context column
    assert s["n_drifted"] == 3 and s["share_drifted"] == pytest.approx(0.75)
    assert set(s["top_drifted"]) == {"market_premium_7d", "log_eth_usd", "trait:3D <Glasses>"}
    assert s["max_psi"] == pytest.approx(max(r["psi"] for r in d["features"]))
    assert s["prediction_psi"] > 1 and s["prediction_drifted"] is True
    assert [r["feature"] for r in d["features"]][-1] == "accessory_count"


def test_report_html_is_a_standalone_page_with_table_and_histograms():
    ref, cur = drifting_frames()
    report = drift_report(ref, cur, reference_pred=np.exp(ref["market_premium_7d"]),
                          current_pred=np.exp(cur["market_premium_7d"]))
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<table" in page and "market_premium_7d" in page and "<style>" in page
    assert "trait:3D &lt;Glasses&gt;" in page and "<Glasses>" not in page  # escaped
    # two drifted numeric features + the prediction histogram, all embedded
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == 3
    assert page.count('<tr class="drifted">') == 3
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page


def test_report_without_drift_has_no_histograms():
    ref, _ = drifting_frames()
    report = drift_report(ref, ref)
    assert report.summary["n_drifted"] == 0 and report.summary["prediction_psi"] is None
    page = report.to_html()
    assert "<img" not in page and 'class="drifted"' not in page


def test_a_feature_significant_only_by_testing_many_is_not_drifted():
    """With many features tested at 1 %, a few read significant between two samples of one
    distribution; the verdict reads the p-values adjusted for the number of tests (Benjamini-Hochberg)."""
    rng = np.random.default_rng(11)
    same = {f"noise_{i}": rng.normal(size=400) for i in range(200)}
    reference = pd.DataFrame({**same, "moved": rng.normal(size=400)})
    current = pd.DataFrame({**{k: rng.normal(size=400) for k in same}, "moved": rng.normal(0.5, 1, size=400)})
    table = feature_drift(reference, current).set_index("feature")
    noise = table.drop(index="moved")
    assert (noise["p_value"] < 0.01).any()  # the raw test alone would call these drifted
    assert not noise["drifted"].any() and (noise["p_adjusted"] >= noise["p_value"]).all()
    assert table.loc["moved", "p_adjusted"] < 1e-4 and table.loc["moved", "drifted"]


def test_the_service_drift_page_says_its_prediction_is_the_log_premium_over_the_floor():
    """The page's "log prediction" did not say which: the service's is log(fair value / floor)."""
    from fairvalue.pipeline import PREDICTION_DRIFT_LABEL

    ref, cur = drifting_frames()
    report = drift_report(ref, cur, reference_pred=ref["market_premium_7d"], current_pred=cur["market_premium_7d"],
                          pred_is_log=True, prediction_label=PREDICTION_DRIFT_LABEL)
    page = report.to_html()
    assert "Prediction drift (predicted log premium over the floor, log(fair value / floor))" in page
    assert "log premium over the floor" in PREDICTION_DRIFT_LABEL
