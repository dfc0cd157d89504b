"""Forward evaluation of a daily-priced market (trading cards): replay and KPIs.

Pure: DataFrames in, numbers out.

Replay. For every day D in [start, end) the model in service is the one trained at the last
retrain tick on or before D on the days before that tick (retrain every `retrain_every_days`),
and it values every card with a price on D from the days before D (models.daily). A row is
(day, card, price p(D), fair value, p10, p90, signal of p(D) against the fair value), exactly
what a nowcast published after day D-1 and before p(D) is known... would show once p(D) is in;
the fair value never saw p(D).

KPIs.
- Valuation: MAPE, median APE, bias, RMSE, band coverage, globally, per category and per card,
  and the same for the naive baseline "the card's previous price" on the same rows.
- Coverage: rows valued / card-days with a price in the window (a card needs a few days of
  history before it has a fair value). Signal rate: (BUY + SELL) / rows valued.
- Signals over a horizon h and a gain g: a BUY on day D is right when the card's price reaches
  p(D) x (1 + g) on some day in (D, D + h]; a SELL is right when it reaches p(D) x (1 - g). The
  outcome is known only when D + h is not after the last day of data. Precision = right / known
  signals; recall = right signals / known rows where the move happened (every opportunity); the
  base rates (how often the move happened at all) are given because precision means something
  only above them.
- Stability: how often a card's signal changes from one day to the next (models.signal_kpis).
- Distribution: BUY / SELL / HOLD counts, overall and per category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.daily import Cuts, DailyParams, DailySeries, TooFewPrices, fit, previous_price
from models.diagnostics import segment_metrics
from models.metrics import valuation_metrics
from models.signal_kpis import signal_stability
from models.signals import BUY, HOLD, SELL, signals


@dataclass
class DailyReplayConfig:
    start: pd.Timestamp
    end: pd.Timestamp
    retrain_every_days: int = 7
    params: DailyParams | None = None
    buy_below: float = 0.10
    sell_above: float = 0.15


def replay_daily(series: DailySeries, config: DailyReplayConfig) -> tuple[pd.DataFrame, list[dict]]:
    """(rows, trainings): see the module docstring. A training's times are naive UTC Timestamps
    (the report writes them: fairvalue.evaluation.trainings). TooFewPrices, naming the retrain
    tick, when the days before a tick cannot train a model."""
    start, end = pd.Timestamp(config.start).normalize(), pd.Timestamp(config.end).normalize()
    ticks = list(pd.date_range(start, end, freq=f"{config.retrain_every_days}D", inclusive="left"))
    frames, trainings = [], []
    # Every training and every valuation below reads a cut of the series up to `end`: their matrices
    # come from one computation over it per (window, alpha) (models.daily.Cuts), the same numbers.
    cuts = Cuts(DailySeries(series.items, series.prices[series.prices["day"] < end]))
    for k, tick in enumerate(ticks):
        until = ticks[k + 1] if k + 1 < len(ticks) else end
        try:
            model = fit(series.before(tick), config.params, cuts)
        except TooFewPrices as exc:  # say which training: the window's first, or one after a gap in the prices
            raise TooFewPrices(f"the model of {tick:%Y-%m-%d}, trained on the days before it: {exc}") from None
        trainings.append({"model_version": k + 1, "trained_at": tick, "window": model.window,
                          "alpha": model.alpha, "data_end": series.before(tick).last_day})
        # Row D of the value matrices uses days < D only, so valuing on the series up to `until`
        # is the same as valuing each day on the series cut at that day.
        known = DailySeries(series.items, series.prices[series.prices["day"] < until])
        values = model.value_days(known, cuts.matrices(known, model.window, model.alpha))
        values = values[(values["day"] >= tick) & (values["day"] < until)].copy()
        values["model_version"] = k + 1
        frames.append(values)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["day", "item_key", "category", "price", "fair_value", "p10", "p90", "model_version"])
    rows["signal"] = signals(rows["price"].to_numpy(dtype=float), rows["fair_value"].to_numpy(dtype=float),
                             config.buy_below, config.sell_above)
    base = previous_price(series)
    rows = rows.merge(base, on=["day", "item_key"], how="left")
    return rows.sort_values(["day", "item_key"]).reset_index(drop=True), trainings


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def signal_outcomes(rows: pd.DataFrame, series: DailySeries, horizon_days: int, gain: float) -> pd.DataFrame:
    """Per row: known, rose (reached p x (1 + gain) within the horizon), fell (reached p x (1 - gain))."""
    wide = np.exp(series.wide())
    last_day = wide.index.max()
    future_max = pd.DataFrame(index=wide.index, columns=wide.columns, dtype=float)
    future_min = future_max.copy()
    # max / min over days D+1 .. D+h: a reversed rolling window, shifted by one day.
    rev = wide.iloc[::-1]
    future_max = rev.rolling(horizon_days, min_periods=1).max().iloc[::-1].shift(-1)
    future_min = rev.rolling(horizon_days, min_periods=1).min().iloc[::-1].shift(-1)
    key = pd.MultiIndex.from_arrays([pd.to_datetime(rows["day"]), rows["item_key"]])
    hi = future_max.stack(future_stack=True).reindex(key).to_numpy(dtype=float)
    lo = future_min.stack(future_stack=True).reindex(key).to_numpy(dtype=float)
    price = rows["price"].to_numpy(dtype=float)
    known = (pd.to_datetime(rows["day"]) + pd.Timedelta(days=horizon_days) <= last_day).to_numpy() & np.isfinite(hi)
    return pd.DataFrame({"known": known,
                         "rose": known & (hi >= price * (1 + gain) - 1e-12),
                         "fell": known & (lo <= price * (1 - gain) + 1e-12)})


def signal_kpis(rows: pd.DataFrame, series: DailySeries, horizon_days: int, gain: float) -> dict[str, Any]:
    out = signal_outcomes(rows, series, horizon_days, gain)
    sig = rows["signal"].to_numpy()
    known, rose, fell = out["known"].to_numpy(), out["rose"].to_numpy(), out["fell"].to_numpy()
    is_buy, is_sell = sig == BUY, sig == SELL
    n_known = int(known.sum())
    return {
        "horizon_days": horizon_days, "gain": gain, "n": len(rows), "n_known": n_known,
        "distribution": {s: int((sig == s).sum()) for s in (BUY, SELL, HOLD)},
        "signal_rate": _ratio(int((is_buy | is_sell).sum()), len(rows)),
        "base_rate_rise": _ratio(int(rose.sum()), n_known), "base_rate_fall": _ratio(int(fell.sum()), n_known),
        "buy": {"n_known": int((is_buy & known).sum()),
                "precision": _ratio(int((is_buy & rose).sum()), int((is_buy & known).sum())),
                "recall": _ratio(int((is_buy & rose).sum()), int(rose.sum()))},
        "sell": {"n_known": int((is_sell & known).sum()),
                 "precision": _ratio(int((is_sell & fell).sum()), int((is_sell & known).sum())),
                 "recall": _ratio(int((is_sell & fell).sum()), int(fell.sum()))},
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    keep = ["value", "n", "mape", "median_ape", "bias", "rmse", "band_coverage"]
    return [_clean({k: r.get(k) for k in keep}) for r in frame.to_dict(orient="records")]


def kpis(rows: pd.DataFrame, series: DailySeries, start: pd.Timestamp, end: pd.Timestamp,
         horizon_days: int, gain: float) -> dict[str, Any]:
    """Every KPI of the module docstring, JSON-friendly."""
    window = series.prices[(series.prices["day"] >= start) & (series.prices["day"] < end)]
    priced = int(len(window))
    fair, price = rows["fair_value"].to_numpy(dtype=float), rows["price"].to_numpy(dtype=float)
    lo, hi = rows["p10"].to_numpy(dtype=float), rows["p90"].to_numpy(dtype=float)
    segments = pd.DataFrame({"category": rows["category"].to_numpy(), "card": rows["item_key"].to_numpy()})
    by = segment_metrics(fair, price, segments, lo, hi) if len(rows) else pd.DataFrame(
        columns=["segment", "value"])
    history = pd.DataFrame({"snapshot_time": rows["day"], "item_id": rows["item_key"], "signal": rows["signal"]})
    per_category_signals = {
        str(c): {s: int((g["signal"] == s).sum()) for s in (BUY, SELL, HOLD)} for c, g in rows.groupby("category")}
    return _clean({
        "card_days_priced": priced,
        "rows_valued": len(rows),
        "coverage": _ratio(len(rows), priced),
        "model": valuation_metrics(fair, price, lo, hi) if len(rows) else {"n": 0},
        "previous_price": valuation_metrics(rows["baseline"].to_numpy(dtype=float), price) if len(rows) else {"n": 0},
        "per_category": _records(by[by["segment"] == "category"]) if len(by) else [],
        "per_card": _records(by[by["segment"] == "card"]) if len(by) else [],
        "signals": signal_kpis(rows, series, horizon_days, gain),
        "signals_per_category": per_category_signals,
        "signal_stability": signal_stability(history).as_dict(),
    })
