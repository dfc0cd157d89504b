"""Diagnostics of a model version: overall and per-segment metrics, price bands, learning curve, HTML."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from models.diagnostics import MISSING_SEGMENT, diagnostics, learning_curve, price_band
from models.metrics import valuation_metrics


def sample(n=200, seed=0):
    r = np.random.default_rng(seed)
    actual = np.exp(r.normal(4, 1, n))
    kind = r.choice(["Human", "Zombie", "Ape"], n, p=[0.8, 0.15, 0.05])
    noise = np.where(kind == "Human", 0.1, 0.4)  # Zombies and Apes are harder
    predicted = actual * np.exp(r.normal(0, noise))
    segments = pd.DataFrame(
        {"type": kind, "accessory_count": r.integers(0, 4, n), "price_band": price_band(predicted).array},
        index=np.arange(1000, 1000 + n),  # an index unrelated to the predictions: alignment is by position
    )
    return predicted, actual, segments


def test_overall_and_segment_metrics_equal_valuation_metrics_on_the_subsets():
    predicted, actual, segments = sample()
    p10, p90 = predicted * 0.8, predicted * 1.25
    d = diagnostics(predicted, actual, segments, p10=p10, p90=p90)
    assert d.overall == valuation_metrics(predicted, actual, p10, p90)
    assert set(d.segments["segment"]) == {"type", "accessory_count", "price_band"}
    for row in d.segments.to_dict(orient="records"):
        mask = (segments[row["segment"]] == row["value"]).to_numpy()
        expected = valuation_metrics(predicted[mask], actual[mask], p10[mask], p90[mask])
        expected.pop("filtered")  # the segment table is flat (the reasons are the window's)
        assert {k: row[k] for k in expected} == pytest.approx(expected)
    types = d.segments[d.segments["segment"] == "type"].set_index("value")
    assert types.loc["Zombie", "mape"] > types.loc["Human", "mape"]
    assert types["n"].sum() == len(predicted)


def test_missing_and_unusable_rows_are_segmented_and_counted():
    predicted = np.array([110.0, 90.0, 100.0, 50.0, 80.0])
    actual = np.array([100.0, 100.0, 0.0, 100.0, np.nan])
    segments = pd.DataFrame({"type": ["Ape", "Ape", "Ape", None, "Alien"]})
    table = diagnostics(predicted, actual, segments).segments.set_index("value")
    assert list(table.index) == ["Alien", "Ape", MISSING_SEGMENT]
    assert (table.loc["Ape", "n"], table.loc["Ape", "n_filtered"]) == (2, 1)
    assert table.loc["Ape", "mape"] == pytest.approx(0.10)
    assert table.loc[MISSING_SEGMENT, "mape"] == pytest.approx(0.5)
    assert (table.loc["Alien", "n"], table.loc["Alien", "n_filtered"]) == (0, 1)
    assert math.isnan(table.loc["Alien", "mape"])


def test_segments_must_match_the_predictions():
    with pytest.raises(ValueError, match="rows"):
        diagnostics(np.ones(3), np.ones(3), pd.DataFrame({"type": ["a", "b"]}))


def test_price_band_labels_and_edges():
    bands = price_band(pd.Series([0, 49.99, 50, 100, 499, 500, 1e4, -1, np.nan], index=list("abcdefghi")))
    assert list(bands.index) == list("abcdefghi")
    assert list(bands.astype(object).where(bands.notna(), None)) == [
        "0–50", "0–50", "50–100", "100–200", "200–500", "500+", "500+", None, None,
    ]
    assert list(bands.cat.categories) == ["0–50", "50–100", "100–200", "200–500", "500+"]
    assert bands.cat.ordered
    assert list(price_band([1.5], edges=(0, 1.5, 3)).astype(str)) == ["1.5–3"]
    with pytest.raises(ValueError):
        price_band([1.0], edges=(0, 100, 50))


def test_price_bands_keep_their_order_in_the_segment_table():
    predicted = np.array([600.0, 150.0, 20.0, 75.0])
    d = diagnostics(predicted, predicted * 1.1, pd.DataFrame({"price_band": price_band(predicted)}))
    assert list(d.segments["value"]) == ["0–50", "50–100", "100–200", "500+"]


def _split_results(table):
    """fit_predict over a {(split, fraction): (predicted, actual, cluster) or an exception} table."""
    calls = []

    def fit_predict(split, fraction):
        calls.append((split, fraction))
        value = table[split, fraction]
        if isinstance(value, Exception):
            raise value
        predicted, actual, cluster = value
        return {"n_train": int(100 * fraction) + split, "predicted": np.array(predicted, dtype=float),
                "actual": np.array(actual, dtype=float), "cluster": np.array(cluster)}

    return fit_predict, calls


def test_learning_curve_pools_the_splits_by_hand():
    # Two splits of two sales each, actual 10. APE at fraction 0.5: split 0 {0.2, 0.4}, split 1
    # {0.1, 0.3} -> pooled MAPE 0.25, median 0.25; at 1.0: {0.1, 0.1} and {0.0, 0.2} -> 0.1.
    fit_predict, calls = _split_results({
        (0, 0.5): ([12, 6], [10, 10], ["d1", "d2"]), (0, 1.0): ([11, 9], [10, 10], ["d1", "d2"]),
        (1, 0.5): ([11, 13], [10, 10], ["d3", "d4"]), (1, 1.0): ([10, 12], [10, 10], ["d3", "d4"]),
    })
    half, full = learning_curve(fit_predict, 2, (0.5, 1.0), n_boot=200)
    assert calls == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
    assert (half["fraction"], half["n_splits"], half["n_scored"]) == (0.5, 2, 4)
    assert half["n_train_mean"] == 50.5 and full["n_train_mean"] == 100.5
    assert half["split_n_train"] == [50, 51] and full["split_n_train"] == [100, 101]
    assert half["valid_mape"] == pytest.approx(0.25) and half["valid_median_ape"] == pytest.approx(0.25)
    assert half["split_mape"] == pytest.approx([0.3, 0.2]) and full["split_mape"] == pytest.approx([0.1, 0.1])
    assert full["valid_mape"] == pytest.approx(0.1)
    assert half["mape_minus_full"] == pytest.approx(0.15) and full["mape_minus_full"] == 0.0
    # The bootstrap resamples days: every resample's MAPE is a mean of the four days' APEs (0.2,
    # 0.4, 0.1, 0.3), so the interval lies within the smallest and largest, around the pooled figure.
    assert 0.1 <= half["valid_mape_lo"] < 0.25 < half["valid_mape_hi"] <= 0.4
    assert full["mape_minus_full_lo"] == full["mape_minus_full_hi"] == 0.0
    # Paired: each day's difference (half minus full) is 0.1, 0.3, 0.1 or 0.1, so the difference's
    # interval lies in [0.1, 0.3]: above zero in every resample.
    assert 0.1 - 1e-12 <= half["mape_minus_full_lo"] <= half["mape_minus_full_hi"] <= 0.3 + 1e-12


def test_learning_curve_bootstrap_is_seeded_and_resamples_clusters_whole():
    r = np.random.default_rng(1)
    actual = np.exp(r.normal(3, 0.5, 400))
    days = np.repeat(np.arange(20), 20)
    shock = np.exp(r.normal(0, 0.3, 20))[days]  # one day's sales share its market move
    table = {(s, f): (actual * shock * np.exp(r.normal(0, 0.1 / f, 400)), actual, days)
             for s in (0, 1) for f in (0.5, 1.0)}
    fit_predict, _ = _split_results(table)
    a = learning_curve(fit_predict, 2, (0.5, 1.0), seed=3)
    assert a == learning_curve(fit_predict, 2, (0.5, 1.0), seed=3)
    # With the day as the cluster the interval is wider than with each sale its own cluster.
    singles = {k: (p, act, np.arange(len(act))) for k, (p, act, _) in table.items()}
    b = learning_curve(_split_results(singles)[0], 2, (0.5, 1.0), seed=3)
    width = [p["valid_mape_hi"] - p["valid_mape_lo"] for p in a]
    assert all(w > 1.5 * (p["valid_mape_hi"] - p["valid_mape_lo"]) for w, p in zip(width, b, strict=True))


def test_learning_curve_keeps_its_points_on_the_same_sales():
    ok = ([11, 9], [10, 10], ["d1", "d2"])
    fit_predict, _ = _split_results({
        (0, 0.25): ValueError("only 12 usable sales to train on; need at least 50"),
        (0, 0.5): ValueError("only 30 usable sales"), (0, 1.0): ok,
        (1, 0.25): ValueError("only 20 usable sales to train on; need at least 50"),
        (1, 0.5): ([12, 12], [10, 10], ["d3", "d4"]), (1, 1.0): ([10, np.nan], [10, 10], ["d3", "d4"]),
    })
    quarter, half, full = learning_curve(fit_predict, 2, (0.25, 0.5, 1.0), skip_errors=(ValueError,))
    # 0.25 failed everywhere: an error point. Split 0 failed at 0.5, so neither point reads it.
    assert quarter == {"fraction": 0.25, "error": "ValueError: only 12 usable sales to train on; need at least 50"}
    assert half["n_splits"] == full["n_splits"] == 1
    assert half["skipped"] == {"0": "ValueError: only 30 usable sales"}
    # The sale without a fair value at 1.0 is left out at every fraction: both points read d3 only.
    assert half["n_scored"] == full["n_scored"] == 1
    assert (half["valid_mape"], full["valid_mape"]) == (pytest.approx(0.2), 0.0)
    with pytest.raises(ValueError, match="usable sales"):
        learning_curve(fit_predict, 2, (0.25, 1.0))
    with pytest.raises(ValueError, match="not in"):
        learning_curve(fit_predict, 1, (0.5, 1.5))


def test_as_dict_is_json_friendly():
    predicted, actual, segments = sample()
    actual[segments["type"].to_numpy() == "Ape"] = 0.0  # a segment without usable pairs: NaN metrics
    curve = [{"fraction": 0.5, "n_train": 500, "valid_mape": 0.3}, {"fraction": 1.0, "n_train": 1000,
                                                                     "valid_mape": 0.25}]
    d = diagnostics(predicted, actual, segments, curve, meta={"model_version": 3}).as_dict()
    text = json.dumps(d, allow_nan=False)
    assert set(d) == {"overall", "segments", "learning_curve", "error_quantiles", "meta"}
    ape = next(r for r in d["segments"]["type"] if r["value"] == "Ape")
    assert ape["n"] == 0 and ape["mape"] is None
    assert [r["value"] for r in d["segments"]["price_band"]] == sorted(
        {r["value"] for r in d["segments"]["price_band"]}, key=lambda v: float(v.split("–")[0].rstrip("+")))
    assert d["learning_curve"] == curve and d["meta"] == {"model_version": 3}
    assert d["error_quantiles"]["q05"] < d["error_quantiles"]["q50"] < d["error_quantiles"]["q95"]
    assert "NaN" not in text


def test_html_is_a_standalone_page_with_plots_and_tables():
    predicted, actual, segments = sample()
    table = {(s, f): (actual * (1 + 0.3 * f), actual, np.arange(len(actual)) // 10) for s in (0, 1) for f in (0.5, 1.0)}
    fit_predict, _ = _split_results(table | {(2, f): ValueError("too few") for f in (0.5, 1.0)})
    curve = learning_curve(fit_predict, 3, (0.5, 1.0), skip_errors=(ValueError,))
    page = diagnostics(predicted, actual, segments, curve).to_html(title="Diagnostics <v3>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>Diagnostics &lt;v3&gt;</title>" in page
    assert page.count("<table") == 4  # overall, error quantiles, segments, learning curve
    assert "Zombie" in page and "50–100" in page and "valid_mape_lo" in page and "mape_minus_full" in page
    assert "Splits left out: 2: ValueError: too few" in page
    # error histogram, scatter, one bar chart per segmentation, learning curve
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == 2 + 3 + 1
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page


def test_html_without_segments_or_curve_still_renders():
    page = diagnostics(np.array([1.0, 2.0]), np.array([np.nan, 0.0])).to_html()
    assert page.count("<img") == 2 and "Learning curve" not in page


def test_item_segments_add_the_attributes_items_carry_and_leave_out_those_they_do_not():
    from models.diagnostics import item_segments

    items = pd.DataFrame({"item_type": ["Human", "Human", "Zombie"], "accessory_count": [2, 1, 1],
                          "gender": ["Female", "Male", "Male"], "skin_tone": ["Albino", "Dark", ""]},
                         index=["1", "2", "3"])
    seg = item_segments(items, ["3", "1", "1", "9"], [5.0, 150.0, 40.0, 10.0])
    assert list(seg.columns) == ["type", "accessory_count", "gender", "skin_tone", "price_band"]
    assert seg["gender"].tolist()[:3] == ["Female" if k == "1" else "Male" for k in ["3", "1", "1"]]
    assert seg["skin_tone"].tolist()[:3] == ["none", "Albino", "Albino"]  # a zombie has no skin tone
    assert pd.isna(seg["skin_tone"][3])  # an item not listed: "(missing)" in the table
    assert seg["type"].isna().tolist() == [False, False, False, True]  # an unknown item: no segment
    bare = item_segments(items.drop(columns=["gender", "skin_tone"]), ["1"], [5.0])
    assert list(bare.columns) == ["type", "accessory_count", "price_band"]


def test_the_page_names_the_units_that_are_not_fractions_of_the_price():
    """rmse is in the fair value's currency, band_width a median log width and the price bands
    are of the fair value, in its currency: the page said none of it."""
    predicted, actual, segments = sample()
    page = diagnostics(predicted, actual, segments).to_html()
    assert "Overall (forward; rmse in the fair value" in page
    assert "band_width the median log(p90 / p10)" in page
    assert "price_band: the fair value" in page and "in its currency" in page
