"""Drift between a reference window (the champion's training window) and a recent window.

Pure: plain functions over DataFrames/arrays that return numbers, tables and a report. The
report's `as_dict()` is what a retrain policy reads; `to_html()` is a standalone page for people.

Definitions used throughout:

- Population Stability Index: PSI = sum over bins i of (c_i - r_i) * ln(c_i / r_i), where r_i and
  c_i are the shares of the reference and current samples in bin i, each floored at `eps` (1e-4) so
  that an empty bin contributes a finite amount. Missing values (NaN/NaT) form their own bin.
  Numeric bins are right-closed quantile bins of the reference's finite values, open at both ends:
  (-inf, q_1], (q_1, q_2], ..., (q_{k-1}, +inf) with q_j the j/bins quantile (linear interpolation),
  duplicate cut points merged. A reference with a single distinct value v gets the bins x < v,
  x == v and x > v. Binary and categorical columns use one bin per category (the union of both
  windows' categories). Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, >= 0.2 drifted.
- Kind of a column: "binary" when it is numeric (or bool) and its non-missing values in both windows
  are all in {0, 1} (and there is at least one); "numeric" for other numeric/datetime columns
  (datetimes as seconds since the epoch); "categorical" otherwise.
- Tests: numeric columns, two-sample Kolmogorov-Smirnov on the non-missing values
  (scipy.stats.ks_2samp, two-sided); binary/categorical columns, chi-square test of independence on
  the 2 x k table (window x category) of non-missing counts (scipy.stats.chi2_contingency, with
  Yates' correction when the table is 2 x 2), categories with no count in either window dropped.
  A test that cannot run (a window without non-missing values, or a single category left) has
  statistic and p_value NaN.
- p_adjusted: a feature table's p-values adjusted for testing every feature at once
  (Benjamini-Hochberg, scipy.stats.false_discovery_control): with some 135 features tested at 1 %,
  about one would read significant in two windows of one market. A single test (the predictions')
  is not adjusted.
- drifted: both windows have at least `min_samples` rows and
  (psi >= `psi_threshold` or (p_adjusted < `p_threshold` and both windows have at least
  `min_samples` non-missing values)).
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from models.features import CONTEXT_COLUMNS

PSI_THRESHOLD = 0.2
P_THRESHOLD = 0.01
MIN_SAMPLES = 30
EPS = 1e-4
HISTOGRAM_FEATURES = 6

_MISSING = "<missing>"
FEATURE_TABLE_COLUMNS = [
    "feature", "kind", "psi", "test", "statistic", "p_value", "p_adjusted", "n_ref", "n_cur",
    "missing_ref", "missing_cur", "mean_ref", "mean_cur", "drifted",
]


# ---------------------------------------------------------------- column handling


def _as_series(values: Any) -> pd.Series:
    """A Series with bools as 0/1 floats and datetimes as float seconds since the epoch (NaT -> NaN)."""
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        secs = (s - pd.Timestamp("1970-01-01")).dt.total_seconds()
        return secs.astype(float)
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        return s.dt.total_seconds().astype(float)
    return s


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype)


def column_kind(reference: Any, current: Any = None) -> str:
    """"binary", "numeric" or "categorical" for a column seen in one or both windows (see module doc)."""
    parts = [_as_series(reference)] + ([] if current is None else [_as_series(current)])
    if not all(_is_numeric(s) for s in parts):
        return "categorical"
    values = np.concatenate([s.to_numpy(dtype=float) for s in parts])
    values = values[~np.isnan(values)]
    if len(values) and np.isin(values, (0.0, 1.0)).all():
        return "binary"
    return "numeric"


def _numeric_cuts(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior cut points of the right-closed quantile bins of the reference's finite values."""
    finite = reference[np.isfinite(reference)]
    if len(finite) == 0:
        return np.array([])
    distinct = np.unique(finite)
    if len(distinct) == 1:
        v = distinct[0]
        return np.array([np.nextafter(v, -np.inf), v])  # x < v | x == v | x > v
    if bins <= 1:
        return np.array([])
    return np.unique(np.quantile(finite, np.arange(1, bins) / bins))


def _numeric_counts(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Counts per bin, the last entry being the missing (NaN) bin."""
    missing = np.isnan(values)
    idx = np.searchsorted(cuts, values[~missing], side="left")  # bin j: cuts[j-1] < x <= cuts[j]
    counts = np.bincount(idx, minlength=len(cuts) + 1).astype(float)
    return np.append(counts, float(missing.sum()))


def _category_labels(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), _MISSING)


def _category_counts(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Counts per category (missing included as `<missing>`), one column per window."""
    ref = _category_labels(reference).value_counts(sort=False)
    cur = _category_labels(current).value_counts(sort=False)
    table = pd.concat({"ref": ref, "cur": cur}, axis=1).fillna(0.0)
    return table.astype(float)


def _psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float) -> float:
    ref_total, cur_total = ref_counts.sum(), cur_counts.sum()
    if ref_total == 0 or cur_total == 0:
        return math.nan
    r = np.maximum(ref_counts / ref_total, eps)
    c = np.maximum(cur_counts / cur_total, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: Any, current: Any, bins: int = 10, *, kind: str | None = None, eps: float = EPS) -> float:
    """Population Stability Index of `current` against `reference`.

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i), shares floored at `eps`, missing values in a bin of
    their own. Numeric columns: right-closed quantile bins of the reference (`bins` of them before
    merging duplicate cut points; a constant reference gets x < v, x == v, x > v). Binary and
    categorical columns: one bin per category. `kind` defaults to `column_kind(reference, current)`.
    NaN when either sample is empty.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    ref, cur = _as_series(reference), _as_series(current)
    if len(ref) == 0 or len(cur) == 0:
        return math.nan
    kind = kind or column_kind(ref, cur)
    if kind == "numeric":
        ref_values, cur_values = ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)
        cuts = _numeric_cuts(ref_values, bins)
        return _psi_from_counts(_numeric_counts(ref_values, cuts), _numeric_counts(cur_values, cuts), eps)
    table = _category_counts(ref, cur)
    return _psi_from_counts(table["ref"].to_numpy(), table["cur"].to_numpy(), eps)


def ks_test(reference: Any, current: Any) -> tuple[float, float]:
    """Two-sample two-sided Kolmogorov-Smirnov (statistic, p_value) on the non-missing values;
    (NaN, NaN) when a window has none."""
    ref = _as_series(reference).to_numpy(dtype=float)
    cur = _as_series(current).to_numpy(dtype=float)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return math.nan, math.nan
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def chi2_test(reference: Any, current: Any) -> tuple[float, float]:
    """Chi-square test of independence (statistic, p_value) on the window x category table of
    non-missing counts; categories empty in both windows dropped; (NaN, NaN) when degenerate
    (a window without non-missing values, or fewer than two categories)."""
    table = _category_counts(_as_series(reference), _as_series(current))
    table = table.drop(index=_MISSING, errors="ignore")
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return math.nan, math.nan
    result = stats.chi2_contingency(table.to_numpy().T)
    return float(result.statistic), float(result.pvalue)


# ---------------------------------------------------------------- per-feature drift


def enough_samples(n_ref: Any, n_cur: Any, min_samples: int = MIN_SAMPLES) -> bool:
    """Whether both windows have the rows for a drift verdict: the rule behind every `drifted`
    (a feature's, prediction_drifted, and so share_drifted); the retrain policy applies it too."""
    return n_ref is not None and n_cur is not None and n_ref >= min_samples and n_cur >= min_samples


def _column_drift(
    name: str, ref: pd.Series, cur: pd.Series, *, bins: int, eps: float,
    psi_threshold: float, p_threshold: float, min_samples: int,
) -> dict[str, Any]:
    ref, cur = _as_series(ref), _as_series(cur)
    kind = column_kind(ref, cur)
    value = psi(ref, cur, bins, kind=kind, eps=eps)
    if kind == "numeric":
        test = "ks"
        statistic, p_value = ks_test(ref, cur)
    else:
        test = "chi2"
        statistic, p_value = chi2_test(ref, cur)
    n_ref, n_cur = int(ref.notna().sum()), int(cur.notna().sum())
    means = [math.nan, math.nan]
    if kind != "categorical":
        for i, s in enumerate((ref, cur)):
            v = s.to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            means[i] = float(v.mean()) if len(v) else math.nan
    enough_rows = enough_samples(len(ref), len(cur), min_samples)
    row = {
        "feature": name,
        "kind": kind,
        "psi": value,
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "n_ref": n_ref,
        "n_cur": n_cur,
        "missing_ref": float(ref.isna().mean()) if len(ref) else math.nan,
        "missing_cur": float(cur.isna().mean()) if len(cur) else math.nan,
        "mean_ref": means[0],
        "mean_cur": means[1],
        "enough_rows": enough_rows,  # not a table column: what _verdict reads
    }
    return {**row, "p_adjusted": p_value,
            "drifted": _verdict(row, p_value, psi_threshold=psi_threshold, p_threshold=p_threshold,
                                min_samples=min_samples)}


def _verdict(row: Mapping[str, Any], p: float, *, psi_threshold: float, p_threshold: float,
             min_samples: int) -> bool:
    """The module docstring's `drifted`, with the p-value `p` (raw for one test, adjusted for a table)."""
    significant = bool(np.isfinite(p) and p < p_threshold and row["n_ref"] >= min_samples
                       and row["n_cur"] >= min_samples)
    return bool(row["enough_rows"] and ((np.isfinite(row["psi"]) and row["psi"] >= psi_threshold) or significant))


def default_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Columns of the reference also in the current frame, minus build_features' context columns."""
    return [c for c in reference.columns if c in current.columns and c not in CONTEXT_COLUMNS]


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    bins: int = 10,
    eps: float = EPS,
    psi_threshold: float = PSI_THRESHOLD,
    p_threshold: float = P_THRESHOLD,
    min_samples: int = MIN_SAMPLES,
) -> pd.DataFrame:
    """One row per feature, sorted by psi descending (NaN last, then by name).

    Columns: feature, kind (numeric/binary/categorical), psi, test ("ks" or "chi2"), statistic,
    p_value, n_ref/n_cur (non-missing counts), missing_ref/missing_cur (missing shares), mean_ref/
    mean_cur (numeric and binary only; for binary, the share of ones) and drifted. Definitions in
    the module docstring. `columns` defaults to `default_columns(reference, current)`.
    """
    columns = list(columns) if columns is not None else default_columns(reference, current)
    absent = [c for c in columns if c not in reference.columns or c not in current.columns]
    if absent:
        raise KeyError(f"columns missing from a window: {absent}")
    rows = [
        _column_drift(
            str(c), reference[c], current[c], bins=bins, eps=eps,
            psi_threshold=psi_threshold, p_threshold=p_threshold, min_samples=min_samples,
        )
        for c in columns
    ]
    p_values = np.array([r["p_value"] for r in rows], dtype=float)
    tested = np.isfinite(p_values)
    adjusted = np.full(len(rows), np.nan)
    if tested.any():
        adjusted[tested] = stats.false_discovery_control(p_values[tested], method="bh")
    for row, p in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = float(p)
        row["drifted"] = _verdict(row, p, psi_threshold=psi_threshold, p_threshold=p_threshold,
                                  min_samples=min_samples)
    table = pd.DataFrame(rows, columns=FEATURE_TABLE_COLUMNS)
    if table.empty:
        return table
    table = table.sort_values(["psi", "feature"], ascending=[False, True], na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _log_positive(values: Any) -> np.ndarray:
    v = _as_series(values).to_numpy(dtype=float)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v) & (v > 0)
    out[ok] = np.log(v[ok])
    return out


def prediction_drift(
    reference_pred: Any,
    current_pred: Any,
    *,
    log: bool = True,
    bins: int = 10,
    eps: float = EPS,
    psi_threshold: float = PSI_THRESHOLD,
    p_threshold: float = P_THRESHOLD,
    min_samples: int = MIN_SAMPLES,
) -> dict[str, Any]:
    """Drift of the model's output: psi, KS statistic and p-value of log(prediction).

    With log=True (default) the inputs are predictions in price space (fair values, or predicted
    premiums floor-relative as exp(p50)) and non-positive values count as missing; pass log=False
    when the inputs are already logs (e.g. the predicted log premium). Also returns the sample
    sizes, missing shares, the mean and median of the logs in each window, mean_shift (current
    mean minus reference mean; exp(mean_shift) - 1 is the typical relative change) and drifted.
    """
    ref = _log_positive(reference_pred) if log else _as_series(reference_pred).to_numpy(dtype=float)
    cur = _log_positive(current_pred) if log else _as_series(current_pred).to_numpy(dtype=float)
    row = _column_drift(
        "log_prediction", pd.Series(ref), pd.Series(cur), bins=bins, eps=eps,
        psi_threshold=psi_threshold, p_threshold=p_threshold, min_samples=min_samples,
    )
    finite_ref, finite_cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    median_ref = float(np.median(finite_ref)) if len(finite_ref) else math.nan
    median_cur = float(np.median(finite_cur)) if len(finite_cur) else math.nan
    return {
        "psi": row["psi"],
        "ks_statistic": row["statistic"],
        "ks_p_value": row["p_value"],
        "n_ref": row["n_ref"],
        "n_cur": row["n_cur"],
        "missing_ref": row["missing_ref"],
        "missing_cur": row["missing_cur"],
        "mean_ref": row["mean_ref"],
        "mean_cur": row["mean_cur"],
        "median_ref": median_ref,
        "median_cur": median_cur,
        "mean_shift": row["mean_cur"] - row["mean_ref"],
        "drifted": row["drifted"],
    }


# ---------------------------------------------------------------- report


def histogram_data(reference: Any, current: Any, bins: int = 30, clip: tuple[float, float] = (0.01, 0.99)
                   ) -> dict[str, list[float]]:
    """Shares of both windows over common bins spanning the `clip` quantiles of both windows'
    finite values pooled (values outside are counted in the outer bins)."""
    ref = _as_series(reference).to_numpy(dtype=float)
    cur = _as_series(current).to_numpy(dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    pooled = np.concatenate([ref, cur])
    if len(pooled) == 0:
        return {"edges": [], "reference": [], "current": []}
    lo, hi = np.quantile(pooled, clip)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def shares(v: np.ndarray) -> list[float]:
        if len(v) == 0:
            return [0.0] * bins
        counts, _ = np.histogram(np.clip(v, lo, hi), edges)
        return (counts / len(v)).tolist()

    return {"edges": edges.tolist(), "reference": shares(ref), "current": shares(cur)}


@dataclass
class DriftReport:
    """Drift of a recent window against a reference window.

    summary: n_ref, n_cur (rows), n_features, n_drifted, share_drifted (n_drifted / n_features),
    max_psi, top_drifted (up to 10 drifted feature names, highest psi first) and prediction_psi,
    prediction_ks, prediction_ks_p_value, prediction_drifted (None without predictions), min_samples
    (the rows each window needs for any verdict: enough_samples).
    features: the feature_drift() table. prediction: prediction_drift() or None. thresholds: the
    thresholds used. histograms: histogram_data() of the top drifted numeric features (and of the
    log predictions), for to_html(). meta: free-form context echoed as is (windows, model version).
    """

    summary: dict[str, Any]
    features: pd.DataFrame
    prediction: dict[str, Any] | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)
    histograms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # What the prediction's logs are, for the page's labels: a "log prediction" alone did not say
    # the service's is the predicted log premium over the floor, log(fair value / floor).
    prediction_label: str = "log prediction"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (NaN/inf -> None, numpy -> Python); json.dumps(..., allow_nan=False) works."""
        return to_jsonable(
            {
                "summary": self.summary,
                "thresholds": self.thresholds,
                "prediction": self.prediction,
                "features": self.features.to_dict(orient="records"),
                "meta": self.meta,
            }
        )

    def to_html(self, title: str = "Drift report") -> str:
        """A standalone HTML page: summary, prediction drift, histograms (PNG, base64) and the table."""
        s = self.summary
        parts = [f"<h1>{_esc(title)}</h1>"]
        if self.meta:
            parts.append(html_kv_table(self.meta, caption="Context"))
        verdict = "drift" if s.get("n_drifted") or s.get("prediction_drifted") else "no drift"
        parts.append(f'<p class="verdict {"bad" if verdict == "drift" else "ok"}">'
                     f"{s.get('n_drifted', 0)} of {s.get('n_features', 0)} features drifted; "
                     f"max PSI {_fmt(s.get('max_psi'))}.</p>")
        parts.append(html_kv_table({k: v for k, v in s.items() if k != "top_drifted"}, caption="Summary"))
        parts.append(html_kv_table(self.thresholds, caption="Thresholds"))
        if self.prediction is not None:
            parts.append(html_kv_table(self.prediction, caption=f"Prediction drift ({self.prediction_label})"))
        if self.histograms:
            parts.append("<h2>Distributions</h2><div class=\"figs\">")
            for name, hist in self.histograms.items():
                label = self.prediction_label if name == _PRED_HIST else name
                parts.append(html_img(_histogram_png(label, hist), f"histogram of {label}"))
            parts.append("</div>")
        parts.append("<h2>Features</h2>")
        classes = ["drifted" if d else "" for d in self.features.get("drifted", pd.Series(dtype=bool))]
        parts.append(html_table(self.features, row_classes=classes))
        return html_page(title, "\n".join(parts))


_PRED_HIST = "__log_prediction__"


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    reference_pred: Any = None,
    current_pred: Any = None,
    pred_is_log: bool = False,
    columns: Sequence[str] | None = None,
    bins: int = 10,
    eps: float = EPS,
    psi_threshold: float = PSI_THRESHOLD,
    p_threshold: float = P_THRESHOLD,
    min_samples: int = MIN_SAMPLES,
    n_histograms: int = HISTOGRAM_FEATURES,
    meta: Mapping[str, Any] | None = None,
    prediction_label: str = "log prediction",
) -> DriftReport:
    """feature_drift() + prediction_drift() (when both predictions are given) in a DriftReport,
    with histogram data for the `n_histograms` drifted numeric features of highest psi.
    `prediction_label` names what the predictions' logs are on the page (their unit)."""
    thresholds = {"psi_threshold": psi_threshold, "p_threshold": p_threshold, "min_samples": min_samples,
                  "bins": bins, "eps": eps}
    table = feature_drift(reference, current, columns, **thresholds)
    prediction = None
    histograms: dict[str, dict[str, list[float]]] = {}
    top = table[table["drifted"] & (table["kind"] == "numeric")].head(n_histograms)
    for name in top["feature"]:
        histograms[name] = histogram_data(reference[name], current[name])
    if reference_pred is not None and current_pred is not None:
        prediction = prediction_drift(reference_pred, current_pred, log=not pred_is_log, **thresholds)
        ref_log = _as_series(reference_pred) if pred_is_log else _log_positive(reference_pred)
        cur_log = _as_series(current_pred) if pred_is_log else _log_positive(current_pred)
        histograms[_PRED_HIST] = histogram_data(ref_log, cur_log)
    n_features = len(table)
    n_drifted = int(table["drifted"].sum()) if n_features else 0
    finite_psi = table["psi"][np.isfinite(table["psi"].astype(float))] if n_features else pd.Series(dtype=float)
    summary = {
        "n_ref": len(reference),
        "n_cur": len(current),
        "n_features": n_features,
        "n_drifted": n_drifted,
        "share_drifted": n_drifted / n_features if n_features else 0.0,
        "max_psi": float(finite_psi.max()) if len(finite_psi) else None,
        "top_drifted": table.loc[table["drifted"], "feature"].head(10).tolist() if n_features else [],
        "prediction_psi": prediction["psi"] if prediction else None,
        "prediction_ks": prediction["ks_statistic"] if prediction else None,
        "prediction_ks_p_value": prediction["ks_p_value"] if prediction else None,
        "prediction_drifted": prediction["drifted"] if prediction else None,
        "min_samples": min_samples,
    }
    return DriftReport(summary=summary, features=table, prediction=prediction, thresholds=thresholds,
                       histograms=histograms, meta=dict(meta or {}), prediction_label=prediction_label)


# ---------------------------------------------------------------- shared HTML / PNG helpers
# (used by models.diagnostics as well)


def to_jsonable(obj: Any) -> Any:
    """Recursively: numpy scalars/arrays -> Python, NaN/inf -> None, timestamps -> ISO strings,
    DataFrames -> lists of records, tuples/sets -> lists, mapping keys -> str."""
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (pd.Timestamp, datetime, date)):
        return None if pd.isna(obj) else obj.isoformat()
    if isinstance(obj, np.datetime64):
        return None if np.isnat(obj) else pd.Timestamp(obj).isoformat()
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (pd.Series, np.ndarray)):
        return to_jsonable(list(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Iterable):
        return [to_jsonable(v) for v in obj]
    return str(obj)


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:8px 0 16px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.text,th.text{text-align:left}
tr.drifted td{background:#fde2e1}tr.drifted td:first-child{border-left:3px solid #d93025}
.verdict{font-weight:600}.verdict.bad{color:#b3261e}.verdict.ok{color:#1e7b34}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs img{border:1px solid #eee}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def html_page(title: str, body: str) -> str:
    """A complete HTML5 document with the module's inline CSS and no external resources."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def html_table(df: pd.DataFrame, row_classes: Sequence[str] | None = None, caption: str | None = None) -> str:
    """An escaped HTML table of `df` (no index); `row_classes` gives a class per row."""
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)
                 or pd.api.types.is_bool_dtype(df[c].dtype)}
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(
        f'<th class="{"text" if c in text_cols else "num"}">{_esc(c)}</th>' for c in df.columns) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        cls = row_classes[i] if row_classes is not None and i < len(row_classes) else ""
        cells = "".join(
            f'<td class="{"text" if c in text_cols else "num"}">{_esc(_fmt(v))}</td>'
            for c, v in zip(df.columns, row, strict=True)
        )
        out.append(f'<tr class="{_esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def html_kv_table(values: Mapping[str, Any], caption: str | None = None) -> str:
    rows = "".join(f'<tr><th class="text">{_esc(k)}</th><td>{_esc(_fmt(v))}</td></tr>' for k, v in values.items())
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tbody>{rows}</tbody></table>"


def html_img(data_uri: str, alt: str) -> str:
    return f'<img src="{data_uri}" alt="{_esc(alt)}">'


def new_figure(width: float = 4.8, height: float = 3.0):
    """A matplotlib Figure drawn with the Agg canvas (no display, no pyplot global state)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # don't switch the backend under an interactive session
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def png_data_uri(fig) -> str:
    """The figure as a base64 `data:image/png` URI (no PNG metadata, so no embedded URLs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _histogram_png(name: str, hist: Mapping[str, list[float]]) -> str:
    fig = new_figure(4.2, 2.6)
    ax = fig.subplots()
    edges = np.asarray(hist["edges"], dtype=float)
    if len(edges) >= 2:
        ax.stairs(hist["reference"], edges, label="reference", color="#5f6368", linewidth=1.5)
        ax.stairs(hist["current"], edges, label="current", color="#d93025", linewidth=1.5, fill=False)
        ax.legend(fontsize=7, frameon=False)
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("share", fontsize=8)
    ax.tick_params(labelsize=7)
    return png_data_uri(fig)
