"""Diagnostics of one trained model version: forward errors overall and by segment, plots, learning curve.

Pure: plain functions over arrays that return a Diagnostics object; `as_dict()` is JSON-friendly and
`to_html()` is a standalone page (inline CSS, base64 PNGs, no external resources), both meant to be
stored as artifacts of the model version.

Definitions: every error number is models.metrics.valuation_metrics on the (predicted, actual) pairs
concerned: relative error (predicted - actual) / actual over pairs with both finite and actual > 0;
mape = mean |relative error|, median_ape, bias = median relative error, mean_bias = mean relative
error, rmse in price units (the fair value's currency, ETH for the punks),
within_10pct / within_25pct = share with |relative error| <= 10% / 25%, band_coverage = share of
actuals inside [p10, p90] when a band is given; n = usable pairs, n_filtered = the others.
A segment's metrics use the rows whose segment value is that value (missing values form the
segment "(missing)").
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.drift import html_img, html_kv_table, html_page, html_table, new_figure, png_data_uri, to_jsonable
from models.metrics import valuation_metrics

MISSING_SEGMENT = "(missing)"
NO_ATTRIBUTE = "none"  # the segment of items without an attribute (item_segments)
# The units the page's labels name: the errors are fractions of the price, except these.
UNITS = "rmse in the fair value's currency, band_width the median log(p90 / p10)"
UNITS_CAPTION = f"Overall (forward; {UNITS})"
SEGMENT_UNITS = f"price_band: the fair value's, in its currency; {UNITS}"
CURVE_CAPTION = ("Learning curve (errors as fractions of the price, pooled over the forward splits; _lo/_hi a "
                 "bootstrap interval over sale days; mape_minus_full paired with the largest fraction)")

METRIC_COLUMNS = ["n", "n_filtered", "mape", "median_ape", "bias", "mean_bias", "rmse", "within_10pct",
                  "within_25pct"]
ERROR_CLIP = (-1.0, 1.0)
MAX_BARS = 20
# The learning curve (learning_curve()): training sizes as fractions of the most recent training
# rows, the interval's level and its bootstrap resamples (cheap: sums per group, no refits).
LEARNING_FRACTIONS = (0.25, 0.5, 1.0)
CURVE_LEVEL = 0.9
CURVE_BOOTSTRAP = 1000


def price_band(prices: Any, edges: Sequence[float] = (0, 50, 100, 200, 500, math.inf)) -> pd.Series:
    """The band [edges[i], edges[i+1]) of each price (in its own currency: ETH for the punks), as
    an ordered categorical Series labelled like "50–100" (en dash; the last band is "500+" when its
    upper edge is inf). Prices outside the edges or missing get NaN. A Series input keeps its index.

    Segment by a price known before the sale (predicted value, floor, last price) rather than by the
    realised price: banding by the actual price selects on the target and biases each band's errors.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError("edges must be at least two strictly increasing numbers")
    labels = [
        f"{lo:g}+" if math.isinf(hi) else f"{lo:g}–{hi:g}" for lo, hi in zip(edges, edges[1:], strict=False)
    ]
    index = prices.index if isinstance(prices, pd.Series) else None
    values = np.asarray(prices, dtype=float)
    bands = pd.cut(values, bins=edges, right=False, labels=labels, ordered=True)
    return pd.Series(bands, index=index, name="price_band")


def item_segments(items: pd.DataFrame, item_keys: Any, fair_value: Any) -> pd.DataFrame:
    """The segmentations of scored sales, aligned with `item_keys`: type, accessory count, each
    item attribute the items carry (gender, skin tone; features.ITEM_ATTRIBUTES) and the price
    band of the fair value (a pre-sale number)."""
    from models.features import ITEM_ATTRIBUTES

    rows = items.reindex(pd.Index(np.asarray(item_keys, dtype=object)))
    out = {"type": rows["item_type"].to_numpy(), "accessory_count": rows["accessory_count"].to_numpy()}
    for name in ITEM_ATTRIBUTES:
        if name in rows and (rows[name].fillna("") != "").any():
            # An item without the attribute (a zombie's skin tone) is its own segment, "none";
            # "(missing)" stays for a sale of an item the items do not list.
            out[name] = rows[name].mask(rows[name] == "", NO_ATTRIBUTE).to_numpy()
    out["price_band"] = price_band(np.asarray(fair_value, dtype=float)).array
    return pd.DataFrame(out)


def _segment_masks(column: pd.Series) -> list[tuple[Any, np.ndarray]]:
    """(value, row mask) per segment value in display order: category order for categoricals, else
    sorted; missing values last, as MISSING_SEGMENT."""
    missing = column.isna().to_numpy()
    present = column.dropna()
    if isinstance(column.dtype, pd.CategoricalDtype):
        values = [c for c in column.cat.categories if (present == c).any()]
    else:
        values = list(pd.unique(present))
        try:
            values = sorted(values)
        except TypeError:
            values = sorted(values, key=str)
    out = [(v, ~missing & (column == v).to_numpy()) for v in values]
    if missing.any():
        out.append((MISSING_SEGMENT, missing))
    return out


def segment_metrics(
    predicted: Any, actual: Any, segments: pd.DataFrame, p10: Any = None, p90: Any = None
) -> pd.DataFrame:
    """Long table, one row per (segment, value): valuation_metrics on the rows of that value.

    Columns: segment (the segmentation, i.e. the column of `segments`), value, then the metrics
    (n, n_filtered, mape, median_ape, bias, mean_bias, rmse, within_10pct, within_25pct[, band_coverage]).
    `segments` is aligned with the predictions by position.
    """
    pred, act = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    lo = None if p10 is None else np.asarray(p10, dtype=float)
    hi = None if p90 is None else np.asarray(p90, dtype=float)
    if len(segments) != len(pred):
        raise ValueError(f"segments has {len(segments)} rows for {len(pred)} predictions")
    columns = ["segment", "value", *METRIC_COLUMNS] + (["band_coverage"] if lo is not None and hi is not None else [])
    rows = []
    for name in segments.columns:
        for value, mask in _segment_masks(segments[name].reset_index(drop=True)):
            m = valuation_metrics(
                pred[mask], act[mask],
                None if lo is None else lo[mask], None if hi is None or lo is None else hi[mask],
            )
            m.pop("filtered")  # a table of flat figures: the reasons are the whole window's
            rows.append({"segment": str(name), "value": value, **m})
    extra = [k for row in rows for k in row if k not in columns]  # metrics valuation_metrics may add later
    return pd.DataFrame(rows, columns=columns + list(dict.fromkeys(extra)))


def learning_curve(
    fit_predict: Callable[[int, float], Mapping[str, Any]],
    n_splits: int = 1,
    fractions: Iterable[float] = LEARNING_FRACTIONS,
    *,
    skip_errors: tuple[type[BaseException], ...] = (),
    level: float = CURVE_LEVEL,
    n_boot: int = CURVE_BOOTSTRAP,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Forward error against training size, pooled over `n_splits` forward splits, with intervals.

    `fit_predict(split, fraction)` trains on the most recent `fraction` of the data before split
    `split`'s window and predicts that window's sales; the caller keeps every split forward (no
    model of a split sees a sale it scores). It returns {"n_train": int, "predicted": array,
    "actual": array, "cluster": array}, the last naming each scored sale's group for the bootstrap
    (its day: one day's sales share the market's move, so they are resampled together).
    Exceptions of the `skip_errors` types mark that (split, fraction) as failed.

    One point per fraction, in the given order, all on the same scored sales so they compare:
      - a fraction that failed on every split is {"fraction": f, "error": "<Type>: <message>"};
      - of the others, only the splits where every one of them fitted are used (`skipped` names
        the splits left out and why); a sale counts when it is usable (finite prediction, positive
        price) at every such fraction.
    Each point: n_splits, n_scored, n_train_mean and split_n_train (each split's training rows: a
    fraction is of each split's own past), valid_mape and valid_median_ape (pooled over the
    splits' sales), valid_mape_lo/_hi (a `level` percentile interval of the pooled MAPE from a
    bootstrap resampling (split, cluster) groups, `n_boot` times), split_mape (each split's own
    MAPE, oldest first: the spread across periods), and mape_minus_full with _lo/_hi: the MAPE
    minus the largest fraction's, on the same resamples (paired, so much tighter than the two
    intervals: it says whether a smaller training set is really worse).
    """
    fractions = [float(f) for f in fractions]
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fraction {f} is not in (0, 1]")
    results: dict[tuple[int, float], dict[str, Any]] = {}
    errors: dict[tuple[int, float], str] = {}
    for s in range(n_splits):
        for f in fractions:
            try:
                results[s, f] = dict(fit_predict(s, f))
            except skip_errors as exc:
                errors[s, f] = f"{type(exc).__name__}: {exc}"
    live = [f for f in fractions if any((s, f) in results for s in range(n_splits))]
    splits = [s for s in range(n_splits) if all((s, f) in results for f in live)]
    skipped = {s: next(errors[s, f] for f in live if (s, f) in errors) for s in range(n_splits) if s not in splits}
    if not splits:  # no split fitted every live fraction: keep the first fraction's failure per point
        live = []

    # The sales of the used splits, usable at every live fraction: one row each.
    ape_columns, clusters, split_of = [], [], []
    for s in splits:
        act = np.asarray(results[s, live[0]]["actual"], dtype=float)
        preds = [np.asarray(results[s, f]["predicted"], dtype=float) for f in live]
        ok = np.isfinite(act) & (act > 0)
        for p in preds:
            ok &= np.isfinite(p)
        ape_columns.append(np.column_stack([np.abs(p[ok] - act[ok]) / act[ok] for p in preds]))
        clusters.append(pd.Series(np.asarray(results[s, live[0]]["cluster"])[ok]).astype(str).to_numpy())
        split_of.append(np.full(int(ok.sum()), s))
    ape = np.vstack(ape_columns) if ape_columns else np.zeros((0, len(live)))
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    boot = np.full((0, len(live)), np.nan)
    if len(ape):
        groups = pd.factorize(pd.Series(np.concatenate(split_of)).astype(str) + "|" + np.concatenate(clusters))[0]
        n_groups = int(groups.max()) + 1
        sums = np.zeros((n_groups, len(live)))
        np.add.at(sums, groups, ape)
        counts = np.bincount(groups, minlength=n_groups).astype(float)
        weights = np.random.default_rng(seed).multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)
        boot = (weights @ sums) / (weights @ counts)[:, None]

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return math.nan, math.nan
        lo, hi = np.quantile(values, (lo_q, hi_q))
        return float(lo), float(hi)

    points = []
    all_rows = np.concatenate(split_of) if split_of else np.zeros(0, dtype=int)
    for f in fractions:
        if f not in live:
            first = next((errors[s, f] for s in range(n_splits) if (s, f) in errors), "no split to score")
            points.append({"fraction": f, "error": first})
            continue
        j, full = live.index(f), live.index(max(live))
        col = ape[:, j]
        mape_lo, mape_hi = interval(boot[:, j])
        diff_lo, diff_hi = interval(boot[:, j] - boot[:, full])
        points.append({
            "fraction": f,
            "n_splits": len(splits),
            "n_scored": len(col),
            "n_train_mean": float(np.mean([results[s, f]["n_train"] for s in splits])),
            # A fraction is of each split's own past: the training sizes behind one point differ by split.
            "split_n_train": [int(results[s, f]["n_train"]) for s in splits],
            "valid_mape": float(col.mean()) if len(col) else math.nan,
            "valid_mape_lo": mape_lo,
            "valid_mape_hi": mape_hi,
            "valid_median_ape": float(np.median(col)) if len(col) else math.nan,
            "split_mape": [float(col[all_rows == s].mean()) if (all_rows == s).any() else math.nan for s in splits],
            "mape_minus_full": float(col.mean() - ape[:, full].mean()) if len(col) else math.nan,
            "mape_minus_full_lo": diff_lo,
            "mape_minus_full_hi": diff_hi,
            **({"skipped": {str(s): e for s, e in skipped.items()}} if skipped else {}),
        })
    return points


@dataclass
class Diagnostics:
    """Forward-error diagnostics of one model version (see the module docstring for definitions).

    overall: valuation_metrics on all pairs. segments: segment_metrics() table (empty without
    segments). learning_curve: the learning_curve() points or None. predicted/actual: the pairs
    (kept for the plots, not exported by as_dict). error_clip: the range of the relative error
    histogram. meta: free-form context (model version, windows) echoed as is.
    """

    overall: dict[str, Any]
    segments: pd.DataFrame
    learning_curve: list[dict[str, Any]] | None
    predicted: np.ndarray
    actual: np.ndarray
    error_clip: tuple[float, float] = ERROR_CLIP
    meta: dict[str, Any] = field(default_factory=dict)

    def relative_errors(self) -> np.ndarray:
        """(predicted - actual) / actual over the usable pairs (both finite, actual > 0)."""
        ok = np.isfinite(self.predicted) & np.isfinite(self.actual) & (self.actual > 0)
        return (self.predicted[ok] - self.actual[ok]) / self.actual[ok]

    def error_quantiles(self) -> dict[str, float | None]:
        rel = self.relative_errors()
        qs = (0.05, 0.25, 0.5, 0.75, 0.95)
        if len(rel) == 0:
            return {f"q{round(q * 100):02d}": None for q in qs}
        return {f"q{round(q * 100):02d}": float(v) for q, v in zip(qs, np.quantile(rel, qs), strict=True)}

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: overall, segments as {segmentation: [{value, n, mape, ...}, ...]},
        learning_curve, error_quantiles of the relative error, meta. NaN -> None."""
        by_segment: dict[str, list[dict[str, Any]]] = {}
        for record in self.segments.to_dict(orient="records"):
            name = record.pop("segment")
            by_segment.setdefault(name, []).append(record)
        return to_jsonable(
            {
                "overall": self.overall,
                "segments": by_segment,
                "learning_curve": self.learning_curve,
                "error_quantiles": self.error_quantiles(),
                "meta": self.meta,
            }
        )

    def to_html(self, title: str = "Model diagnostics") -> str:
        """Standalone page: overall metrics, error histogram, predicted-vs-actual scatter, MAPE by
        segment, learning curve (when given) as base64 PNGs, then the segment and curve tables."""
        parts = [f"<h1>{html.escape(title)}</h1>"]
        if self.meta:
            parts.append(html_kv_table(self.meta, caption="Context"))
        parts.append(html_kv_table(self.overall, caption=UNITS_CAPTION))
        parts.append(html_kv_table(self.error_quantiles(), caption="Relative error quantiles"))
        parts.append("<h2>Errors</h2><div class=\"figs\">")
        parts.append(html_img(self._error_histogram_png(), "distribution of relative errors"))
        parts.append(html_img(self._scatter_png(), "predicted vs actual, log-log"))
        parts.append("</div>")
        if not self.segments.empty:
            parts.append("<h2>By segment</h2><div class=\"figs\">")
            for name in self.segments["segment"].unique():
                parts.append(html_img(self._segment_png(name), f"MAPE by {name}"))
            parts.append("</div>")
            table = self.segments.assign(value=self.segments["value"].astype(str))
            parts.append(html_table(table, caption="Metrics by segment (" + SEGMENT_UNITS + ")"))
        if self.learning_curve:
            parts.append("<h2>Learning curve</h2><div class=\"figs\">")
            parts.append(html_img(self._learning_curve_png(), "learning curve"))
            parts.append("</div>")
            parts.append(html_table(self._learning_curve_table(), caption=CURVE_CAPTION))
            skipped = next((p["skipped"] for p in self.learning_curve if p.get("skipped")), None)
            if skipped:
                parts.append("<p>Splits left out: " + html.escape(
                    "; ".join(f"{s}: {e}" for s, e in skipped.items())) + "</p>")
        return html_page(title, "\n".join(parts))

    # ------------------------------------------------------------ plots

    def _error_histogram_png(self) -> str:
        lo, hi = self.error_clip
        rel = self.relative_errors()
        fig = new_figure(4.8, 3.0)
        ax = fig.subplots()
        if len(rel):
            outside = float(((rel < lo) | (rel > hi)).mean())
            ax.hist(np.clip(rel, lo, hi), bins=40, range=(lo, hi), color="#4c78a8")
            ax.axvline(0, color="#222", linewidth=0.8)
            ax.axvline(float(np.median(rel)), color="#d93025", linewidth=1, linestyle="--", label="median")
            ax.legend(fontsize=7, frameon=False)
            ax.set_title(f"(pred − actual) / actual, clipped to [{lo:g}, {hi:g}] ({outside:.1%} outside)",
                         fontsize=8)
        else:
            ax.set_title("no usable pairs", fontsize=8)
        ax.set_xlabel("relative error", fontsize=8)
        ax.set_ylabel("sales", fontsize=8)
        ax.tick_params(labelsize=7)
        return png_data_uri(fig)

    def _scatter_png(self) -> str:
        ok = np.isfinite(self.predicted) & np.isfinite(self.actual) & (self.actual > 0) & (self.predicted > 0)
        x, y = self.actual[ok], self.predicted[ok]
        fig = new_figure(3.6, 3.4)
        ax = fig.subplots()
        if len(x):
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.scatter(x, y, s=4, alpha=min(1.0, max(0.15, 300 / len(x))), color="#4c78a8", linewidths=0)
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="#d93025", linewidth=1, label="y = x")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=7, frameon=False)
        ax.set_title(f"predicted vs actual (n={len(x)})", fontsize=8)
        ax.set_xlabel("actual", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.tick_params(labelsize=7)
        return png_data_uri(fig)

    def _segment_png(self, name: str) -> str:
        rows = self.segments[self.segments["segment"] == name]
        if len(rows) > MAX_BARS:  # keep the largest segments, in their display order
            rows = rows.loc[rows["n"].nlargest(MAX_BARS).index.sort_values()]
        labels = [f"{v} (n={n})" for v, n in zip(rows["value"], rows["n"], strict=True)]
        mape = rows["mape"].to_numpy(dtype=float) if "mape" in rows else np.full(len(rows), np.nan)
        fig = new_figure(4.8, 0.8 + 0.28 * max(len(rows), 1))
        ax = fig.subplots()
        positions = np.arange(len(rows))
        ax.barh(positions, np.nan_to_num(mape), color="#4c78a8")
        ax.set_yticks(positions, labels, fontsize=7)
        ax.invert_yaxis()
        suffix = f" (largest {MAX_BARS})" if len(self.segments[self.segments["segment"] == name]) > MAX_BARS else ""
        ax.set_title(f"MAPE by {name}{suffix}", fontsize=8)
        ax.set_xlabel("MAPE", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        return png_data_uri(fig)

    def _learning_curve_table(self) -> pd.DataFrame:
        rows = []
        for p in self.learning_curve or []:
            row = {k: v for k, v in p.items() if k != "skipped"}
            if "split_mape" in row:
                row["split_mape"] = ", ".join("–" if v is None or not math.isfinite(v) else f"{v:.4f}"
                                              for v in row["split_mape"])
            if "split_n_train" in row:
                row["split_n_train"] = ", ".join(str(n) for n in row["split_n_train"])
            rows.append(row)
        return pd.DataFrame(rows)

    def _learning_curve_png(self) -> str:
        points = [p for p in self.learning_curve or [] if "error" not in p and "valid_mape" in p]
        fig = new_figure(4.2, 3.0)
        ax = fig.subplots()
        if points:
            x = np.array([p["fraction"] for p in points])
            mape = np.array([p["valid_mape"] for p in points], dtype=float)
            if all("valid_mape_lo" in p for p in points):
                lo = np.array([p["valid_mape_lo"] for p in points], dtype=float)
                hi = np.array([p["valid_mape_hi"] for p in points], dtype=float)
                ax.errorbar(x, mape, yerr=np.clip(np.nan_to_num([mape - lo, hi - mape]), 0, None), marker="o",
                            capsize=3, color="#4c78a8", label=f"MAPE, pooled ({CURVE_LEVEL:.0%} interval)")
            else:
                ax.plot(x, mape, marker="o", color="#4c78a8", label="MAPE")
            per_split = [p.get("split_mape") or [] for p in points]
            for k in range(min(map(len, per_split))):
                ax.plot(x, [s[k] for s in per_split], color="#999", linewidth=0.7, alpha=0.8,
                        label="one split" if k == 0 else None)
            if all("valid_median_ape" in p for p in points):
                ax.plot(x, [p["valid_median_ape"] for p in points], marker="s", linestyle="--", color="#f58518",
                        label="median APE, pooled")
            ax.legend(fontsize=7, frameon=False)
            ax.set_xticks(x, [f"{f:g}" for f in x])
        ax.set_xlabel("fraction of the most recent training sales", fontsize=8)
        ax.set_ylabel("forward error", fontsize=8)
        n = points[0].get("n_splits", 1) if points else 0
        ax.set_title(f"learning curve ({n} forward split{'s' if n != 1 else ''})", fontsize=8)
        ax.tick_params(labelsize=7)
        return png_data_uri(fig)


def diagnostics(
    predicted: Any,
    actual: Any,
    segments: pd.DataFrame | None = None,
    learning_curve: list[dict[str, Any]] | None = None,
    *,
    p10: Any = None,
    p90: Any = None,
    error_clip: tuple[float, float] = ERROR_CLIP,
    meta: Mapping[str, Any] | None = None,
) -> Diagnostics:
    """Diagnostics of one model version on forward (out-of-time) pairs.

    `segments` has one column per segmentation (e.g. type, accessory_count, price_band), aligned with
    the predictions by position; `learning_curve` is the output of learning_curve(). p10/p90 (the
    band) add band_coverage to every metrics row.
    """
    pred = np.asarray(predicted, dtype=float).ravel()
    act = np.asarray(actual, dtype=float).ravel()
    if len(pred) != len(act):
        raise ValueError(f"{len(pred)} predictions for {len(act)} actuals")
    overall = valuation_metrics(pred, act, p10, p90)
    table = (
        segment_metrics(pred, act, segments, p10, p90)
        if segments is not None and len(segments.columns)
        else pd.DataFrame(columns=["segment", "value", *METRIC_COLUMNS])
    )
    return Diagnostics(
        overall=overall,
        segments=table,
        learning_curve=None if learning_curve is None else [dict(p) for p in learning_curve],
        predicted=pred,
        actual=act,
        error_clip=error_clip,
        meta=dict(meta or {}),
    )
