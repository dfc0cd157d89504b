"""Fair value for markets quoted daily (trading cards): the card's own recent prices, restated by
its category's robust market index, never using the price it is compared with.

Definitions (all logs natural; a "day" is a calendar day; prices of day D are known once D is over):

- Category index. r_c(d) = log p_c(d) - log p_c(d-1) for each card c (a missing day carries the
  card's last price at most 3 days). The index step of category g on day d is the MEDIAN of r_c(d)
  over g's cards (robust: one card's spike does not move its category), and I_g(d) is the running
  sum of the steps (I_g = 0 on the first day).
- Relative level. rel_c(d) = log p_c(d) - I_g(d) on the days the card has a price.
- Fair value of card c for day D, from days strictly before D only:
      m = median(rel_c(d), D-W <= d <= D-1)
      log FV_c(D) = I_g(D-1) + m + alpha * clip(rel_c(D-1) - m, -2 s_c(D), +2 s_c(D))
  i.e. the median of the card's last W prices, each restated by its category's move from its day
  to D-1, pulled by alpha toward the latest price, but never by more than two robust deviations
  s_c(D) (below): ordinary drift is followed, a spike is not. The same-day price p_c(D) enters
  nothing of FV_c(D): it is the market price FV_c(D) is compared with (signals) and scored against.
- Band. z = (log p_c(D) - log FV_c(D)) / s_c(D), s_c(D) = the interquartile range of rel_c over
  the S = max(W, 28) days before D, divided by 1.349 (a robust standard deviation; at least 1 %).
  p10 / p90 = FV x exp(q x s) with q the 10th / 90th percentiles of z per category over the
  training days (forward residuals, since FV never saw its own day), clipped so p10 <= FV <= p90.
- Training chooses W and alpha from small grids by forward MAPE over the last `tune_days` priced
  days of the training data (days with at least one price), then fits the band quantiles on the
  last `band_days` priced days. Nothing after the training data is looked at.

Each row of every matrix here depends only on prices of its day and before, so computing them on
a whole series and reading day D equals computing them on the series cut at D (tested).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any

import joblib
import numpy as np
import pandas as pd
from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from models.metrics import valuation_metrics
from models.signals import market_signals
from models.times import stale_limited

CARRY_DAYS = 3
# A card's window median needs at least this many prices (a third of the window when longer), so a
# window of fewer days could never hold enough: DailyParams refuses one.
MIN_WINDOW_PRICES = 3
MIN_SCALE = 0.01
CLIP = 2.0
Z_QUANTILES = (0.10, 0.90)


@dataclass
class DailySeries:
    """What a daily model may know: the items and their daily prices."""

    items: pd.DataFrame  # index item_key; columns category, active
    prices: pd.DataFrame  # columns day (naive midnight datetime64), item_key, price, volume; sorted by day

    def before(self, t: pd.Timestamp) -> DailySeries:
        """The prices known just before t: those of days that ended before t's day began."""
        return DailySeries(self.items, self.prices[self.prices["day"] < pd.Timestamp(t).normalize()])

    @property
    def last_day(self) -> pd.Timestamp | None:
        return None if self.prices.empty else self.prices["day"].max()

    def wide(self, through: pd.Timestamp | None = None) -> pd.DataFrame:
        """Log prices, one row per calendar day (first day .. `through` or the last day), one column
        per item (every item of `items`, in order); NaN where there is no price."""
        if self.prices.empty:
            return pd.DataFrame(columns=self.items.index)
        table = self.prices.pivot_table(index="day", columns="item_key", values="price", aggfunc="last")
        end = through if through is not None else table.index.max()
        days = pd.date_range(table.index.min(), max(end, table.index.max()), freq="D")
        return np.log(table.reindex(index=days, columns=self.items.index))


@dataclass
class Matrices:
    """Everything the model reads, per calendar day and card, for one (W, alpha)."""

    log_price: pd.DataFrame
    index: pd.DataFrame  # I_g(d) of each card's category, per card column
    log_fair: pd.DataFrame  # log FV_c(D): from days < D
    scale: pd.DataFrame  # s_c(D): from days < D
    median_rel: pd.DataFrame  # median rel over the window before D (for explanations)


def category_index(log_price: pd.DataFrame, categories: pd.Series) -> pd.DataFrame:
    """I_g(d) per card column (the index of the card's category); see the module docstring."""
    steps = log_price.ffill(limit=CARRY_DAYS).diff()
    # Filled as one array, then framed: a frame filled category by category is one block per
    # category, and every later step on it (and on what is derived from it) went block by block.
    out = np.zeros(log_price.shape)
    for cols in categories.groupby(categories).groups.values():
        cols = [c for c in cols if c in steps.columns]
        level = steps[cols].median(axis=1, skipna=True).fillna(0.0).cumsum()
        out[:, log_price.columns.get_indexer(cols)] = level.to_numpy()[:, None]
    return pd.DataFrame(out, index=log_price.index, columns=log_price.columns)


MARKET_BASE = 100.0
MARKET_INDEX_MEANING = (f"{MARKET_BASE:g} x exp(running sum of the cards' median daily log price move), "
                        f"{MARKET_BASE:g} on the first day of prices (a card missing a day carries its price "
                        "up to 3 days)")


def market_days(series: DailySeries) -> pd.DataFrame:
    """Per day with at least one price: day, n_cards (cards priced), median_price and index, the
    market index level (MARKET_BASE on the first day of prices).

    The index is category_index with every card in one category: the running sum of the median
    of the cards' daily log moves. It is the model's own notion of a market move, so it is robust
    to one card's spike; and, being chained from moves, it does not jump when a dear card misses a
    day or joins, as the median price does."""
    log_price = series.wide()
    if log_price.empty or log_price.shape[1] == 0:
        return pd.DataFrame({"day": pd.Series(dtype="datetime64[ns]"), "n_cards": pd.Series(dtype=int),
                             "median_price": pd.Series(dtype=float), "index": pd.Series(dtype=float)})
    whole_market = pd.Series("market", index=log_price.columns)
    level = MARKET_BASE * np.exp(category_index(log_price, whole_market).iloc[:, 0])
    n_cards = log_price.notna().sum(axis=1)
    out = pd.DataFrame({"day": log_price.index, "n_cards": n_cards.to_numpy(),
                        "median_price": np.exp(log_price).median(axis=1).to_numpy(), "index": level.to_numpy()})
    return out[out["n_cards"] > 0].reset_index(drop=True)


@dataclass
class _WindowParts:
    log_price: pd.DataFrame
    index: pd.DataFrame
    median_rel: pd.DataFrame
    scale: pd.DataFrame
    latest: pd.DataFrame


@dataclass
class _Levels:
    """What every window reads alike: the log prices, the category index and each card's relative
    level (rel) as row D sees it, from days up to D-1. Tuning reads five windows of one series:
    computed once, not per window (a third of a replay's time went to computing them again)."""

    log_price: pd.DataFrame
    index: pd.DataFrame
    before: pd.DataFrame  # rel up to D-1
    latest: pd.DataFrame  # the latest rel before D, carried at most CARRY_DAYS


def _levels(series: DailySeries, through: pd.Timestamp | None = None) -> _Levels:
    log_price = series.wide(through)
    categories = series.items["category"].reindex(log_price.columns)
    index = category_index(log_price, categories)
    rel = log_price - index
    return _Levels(log_price, index, rel.shift(1), rel.ffill(limit=CARRY_DAYS).shift(1))


def _window_parts(series: DailySeries, window: int, through: pd.Timestamp | None = None,
                  levels: _Levels | None = None) -> _WindowParts:
    levels = levels or _levels(series, through)
    before = levels.before  # row D sees rel up to D-1
    min_periods = max(MIN_WINDOW_PRICES, window // 3)
    median_rel = before.rolling(window, min_periods=min_periods).median()
    rolling = before.rolling(max(window, 28), min_periods=min_periods)
    iqr = (rolling.quantile(0.75) - rolling.quantile(0.25)) / 1.349
    scale = pd.DataFrame(np.maximum(iqr.to_numpy(), MIN_SCALE), index=iqr.index, columns=iqr.columns)
    return _WindowParts(levels.log_price, levels.index, median_rel, scale, levels.latest)


def _combine(parts: _WindowParts, alpha: float) -> Matrices:
    # The pull toward the latest price is clipped at CLIP robust deviations: ordinary moves pass,
    # a spike does not drag the fair value along.
    bound = CLIP * parts.scale.to_numpy()
    pull = np.nan_to_num(np.clip(parts.latest.to_numpy() - parts.median_rel.to_numpy(), -bound, bound), nan=0.0)
    # I_g(D-1) + median + pull, in numpy: as pandas on these frames of one block per card (the
    # shift and the sums were a third of a replay's tuning), the same sums in the same order.
    index = parts.index.to_numpy()
    prior = np.full_like(index, np.nan)
    prior[1:] = index[:-1]
    log_fair = pd.DataFrame(prior + parts.median_rel.to_numpy() + alpha * pull, index=parts.median_rel.index,
                            columns=parts.median_rel.columns)
    return Matrices(parts.log_price, parts.index, log_fair, parts.scale, parts.median_rel)


def matrices(series: DailySeries, window: int, alpha: float, through: pd.Timestamp | None = None) -> Matrices:
    return _combine(_window_parts(series, window, through), alpha)


class Cuts:
    """matrices() of cuts of one series (its prices before some day), from one computation per
    (window, alpha) over the whole series. Each row of a matrix depends only on its day and the
    days before it (module docstring), and every step computes it from those alone and in the
    same order (fills, shifts, the row medians, cumulative sums, pandas' rolling windows), so a
    cut's matrices are the whole's rows up to the cut's last priced day, bit for bit. A replay
    cuts one series at every retrain tick, and computed those rows again twice per tick."""

    def __init__(self, series: DailySeries) -> None:
        self.series = series
        self._whole: dict[tuple[int, float], Matrices] = {}

    def matrices(self, cut: DailySeries, window: int, alpha: float) -> Matrices:
        days = self.series.prices["day"]
        if cut.prices.empty or cut.prices["day"].min() != days.min() or len(cut.prices) != (days <= cut.last_day).sum():
            return matrices(cut, window, alpha)  # not a cut of the series: nothing to share
        whole = self._whole.get((window, alpha))
        if whole is None:
            whole = self._whole[window, alpha] = matrices(self.series, window, alpha)
        rows = whole.log_price.index <= cut.last_day  # wide() runs to the last priced day
        return Matrices(whole.log_price[rows], whole.index[rows], whole.log_fair[rows], whole.scale[rows],
                        whole.median_rel[rows])


def matrices_and_lifted(series: DailySeries, window: int, alpha: float, lift: float) -> tuple[Matrices, Matrices]:
    """The matrices, and the same with every category index higher by `lift` (in log) before the
    fair value is formed from it (the gates' check that a higher market never lowers a fair
    value), from one pass over the window."""
    parts = _window_parts(series, window)
    return _combine(parts, alpha), _combine(replace(parts, index=parts.index + lift), alpha)


Days = Annotated[int, Field(ge=1, le=3650)]


def _holds_enough_prices(window: int) -> int:
    """A window shorter than MIN_WINDOW_PRICES days: every training with it would fail (pandas'
    min_periods above the window), so an operator's request is refused before it is queued."""
    if window < MIN_WINDOW_PRICES:
        raise ValueError(f"{window} is too short: a window of fewer than {MIN_WINDOW_PRICES} days cannot hold the "
                         f"{MIN_WINDOW_PRICES} prices a card's median needs")
    return window


WindowDays = Annotated[Days, AfterValidator(_holds_enough_prices)]


# Checked as they are made, like estimator.TrainParams: an operator's request names them.
@pydantic_dataclass(config=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False))
class DailyParams:
    windows: Annotated[tuple[WindowDays, ...], Field(min_length=1)] = (7, 14, 21, 28, 42)
    alphas: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(min_length=1)] = (0.0, 0.25, 0.5, 0.75)
    tune_days: Days = 60
    band_days: Days = 120
    min_band_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 50

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class DailyFairValueModel:
    window: int
    alpha: float
    band: dict[str, tuple[float, float]]  # category -> (q10, q90) of z; "*" for all
    params: dict[str, Any] = field(default_factory=dict)
    tuning: list[dict[str, Any]] = field(default_factory=list)
    name: str = "daily-robust-index-v1"

    # --- valuing ------------------------------------------------------------------------

    def _quantiles(self, categories: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(q10, q90) of z for each row's category: its own, else the fallback. Looked up once per
        category, not per row (a per-row lambda was a sixth of a replay's time)."""
        fallback = self.band.get("*", (-0.1, 0.1))
        codes, found = pd.factorize(categories)  # a missing category is code -1: the table's last entry
        table = np.array([self.band.get(c, fallback) for c in found] + [fallback], dtype=float).reshape(-1, 2)
        return table[codes, 0], table[codes, 1]

    def value_days(self, series: DailySeries, m: Matrices | None = None) -> pd.DataFrame:
        """Long frame of every (day, card) with a price and a fair value: day, item_key, category,
        price, fair_value, p10, p90. Row D uses days < D only."""
        m = m or matrices(series, self.window, self.alpha)
        long = pd.DataFrame({
            "day": np.repeat(m.log_price.index.to_numpy(), m.log_price.shape[1]),
            "item_key": np.tile(m.log_price.columns.to_numpy(), m.log_price.shape[0]),
            "log_price": m.log_price.to_numpy().ravel(),
            "log_fair": m.log_fair.to_numpy().ravel(),
            "scale": m.scale.to_numpy().ravel(),
        })
        long = long[np.isfinite(long["log_price"]) & np.isfinite(long["log_fair"])].reset_index(drop=True)
        long["category"] = series.items["category"].reindex(long["item_key"]).to_numpy()
        lo, hi = self._quantiles(long["category"])
        fair = np.exp(long["log_fair"].to_numpy())
        return pd.DataFrame({
            "day": long["day"].to_numpy(), "item_key": long["item_key"].to_numpy(),
            "category": long["category"].to_numpy(), "price": np.exp(long["log_price"].to_numpy()),
            "fair_value": fair, "p10": fair * np.exp(lo * long["scale"].to_numpy()),
            "p90": fair * np.exp(hi * long["scale"].to_numpy()),
        })

    def value_at(self, series: DailySeries, as_of: pd.Timestamp, buy_below: float, sell_above: float,
                 signal_max_age_days: float, item_keys=None) -> pd.DataFrame:
        """What a nowcast at `as_of` publishes: for each card, its latest market day L before as_of's
        day, the fair value for L (from days before L), the band, the market price p(L) and the
        signal comparing them. Cards without a fair value for L yet are left out."""
        known = series.before(as_of)
        keys = list(known.items.index if item_keys is None else item_keys)
        if known.prices.empty:
            return _empty_values()
        values = self.value_days(known)
        # Only the card's own L: a card back after a gap has no fair value for L until its window
        # holds a few prices again, and the last day that had one would be an old value and an old
        # price published as the current market.
        latest_day = known.prices.groupby("item_key")["day"].max()
        values = values[values["item_key"].isin(keys)
                        & (values["day"].to_numpy() == latest_day.reindex(values["item_key"]).to_numpy())]
        latest = values.set_index("item_key").reindex([k for k in keys if k in set(values["item_key"])])
        signal, basis, deviation = _signals(latest["price"], latest["day"], latest["fair_value"], as_of, buy_below,
                                            sell_above, signal_max_age_days)
        return pd.DataFrame({
            "item_key": latest.index.to_numpy(),
            "fair_value": latest["fair_value"].to_numpy(),
            "p10": latest["p10"].to_numpy(),
            "p90": latest["p90"].to_numpy(),
            "signal": signal,
            "signal_basis": basis,  # the price the signal read, and its deviation (models.nowcast.value_all_items)
            "deviation": deviation,
            "last_price": latest["price"].to_numpy(),
            "last_sale_at": latest["day"].to_numpy(),
            "floor": np.nan,  # no floor in a daily market; kept for the snapshot's columns
        })

    def explain(self, series: DailySeries, item_key: str, as_of: pd.Timestamp, buy_below: float,
                sell_above: float, signal_max_age_days: float) -> dict[str, Any]:
        """Why the card's published fair value is what it is (same numbers as value_at, `as_of` the
        moment the snapshot valued at: its valued_at). `deviation` is the one the signal read, as
        the item's answer has it: null when the market price is older than signal_max_age_days."""
        known = series.before(as_of)
        m = matrices(known, self.window, self.alpha)
        if item_key not in m.log_price.columns:
            raise KeyError(item_key)
        col = m.log_price[item_key]
        priced = col.index[col.notna()]
        # The card's latest market day, as value_at publishes it: never an older day that had a value.
        if len(priced) == 0 or pd.isna(m.log_fair.at[priced[-1], item_key]):
            raise LookupError(f"{item_key} has too short a price history for a fair value")
        day = priced[-1]
        row = self.value_days(known, m)
        row = row[(row["item_key"] == item_key) & (row["day"] == day)].iloc[0]
        window = col[(col.index >= day - pd.Timedelta(days=self.window)) & (col.index < day)].dropna()
        idx = m.index[item_key]
        _, _, deviation = _signals(pd.Series([row["price"]]), pd.Series([day]), pd.Series([row["fair_value"]]), as_of,
                                   buy_below, sell_above, signal_max_age_days)
        category_move = float(np.exp(idx.loc[day - pd.Timedelta(days=1)] -
                                      idx.loc[max(window.index.min(), idx.index.min())]) - 1) if len(window) else None
        return {
            "item_id": item_key, "valued_day": day.date().isoformat(), "category": row["category"],
            "market_price": float(row["price"]), "fair_value": float(row["fair_value"]),
            "p10": float(row["p10"]), "p90": float(row["p90"]),
            "deviation": None if np.isnan(deviation[0]) else float(deviation[0]),
            "method": f"median of the card's last {self.window} daily prices (days before the valued day), each "
                      f"restated by its category index's move to the day before" +
                      (f", pulled {self.alpha:.0%} toward the latest price" if self.alpha else ""),
            "window_prices": {"n": int(len(window)), "median": float(np.exp(window.median())) if len(window) else None,
                              "first_day": window.index.min().date().isoformat() if len(window) else None},
            "category_index_move_over_window": category_move,
            "band_quantiles_z": list(self.band.get(row["category"], self.band.get("*", (None, None)))),
        }

    # --- artifact -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        joblib.dump(self, buf, compress=3)
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> DailyFairValueModel:
        """Only call this on bytes whose sha256 was verified (storage.artifacts does)."""
        model = joblib.load(io.BytesIO(data))
        if not isinstance(model, DailyFairValueModel):
            raise TypeError(f"artifact holds {type(model).__name__}, not DailyFairValueModel")
        return model


def _signals(price: pd.Series, day: pd.Series, fair_value: pd.Series, as_of: pd.Timestamp, buy_below: float,
             sell_above: float, signal_max_age_days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signal, basis, deviation) of each card's market price p(L) against its fair value: the
    service's rule (models.signals.market_signals; cards take no asks), the price aged from the
    moment valued, as the API reads a published row's."""
    age = (pd.Timestamp(as_of) - pd.to_datetime(day)) / pd.Timedelta(days=1)
    return market_signals(np.full(len(price), np.nan), price.to_numpy(dtype=float), age.to_numpy(dtype=float),
                          fair_value.to_numpy(dtype=float), buy_below, sell_above, signal_max_age_days)


def valuation_moment(series: DailySeries, as_of: pd.Timestamp, stale_after_days: float | None) -> pd.Timestamp:
    """The moment a nowcast asked for at `as_of` values the cards at: the punks' rule
    (models.times.stale_limited), the last input being the end of the last priced day before
    as_of's day (a day's price is known once the day is over). Valued years after the prices
    stop, every card's price is older than FAIRVALUE_SIGNAL_MAX_AGE_DAYS and no card signals;
    as of a little after the last prices, the signals are those of the last market known."""
    last_day = series.before(as_of).last_day
    return stale_limited(as_of, None if last_day is None else last_day + pd.Timedelta(days=1), stale_after_days)


def _empty_values() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float) for c in ("fair_value", "p10", "p90", "deviation", "last_price",
                                                             "floor")}
                        | {c: pd.Series(dtype=object) for c in ("item_key", "signal", "signal_basis")}
                        | {"last_sale_at": pd.Series(dtype="datetime64[ns]")})[
        ["item_key", "fair_value", "p10", "p90", "signal", "signal_basis", "deviation", "last_price", "last_sale_at",
         "floor"]]


def previous_price(series: DailySeries) -> pd.DataFrame:
    """The naive baseline: each (day, card) valued at the card's previous known price (at most
    CARRY_DAYS old). Columns day, item_key, baseline."""
    log_price = series.wide()
    prev = log_price.ffill(limit=CARRY_DAYS).shift(1)
    return pd.DataFrame({
        "day": np.repeat(prev.index.to_numpy(), prev.shape[1]),
        "item_key": np.tile(prev.columns.to_numpy(), prev.shape[0]),
        "baseline": np.exp(prev.to_numpy().ravel()),
    })


MIN_TRAIN_DAYS = 14


class TooFewPrices(ValueError):
    """The prices cannot train a daily model: fewer than MIN_TRAIN_DAYS priced days, or too few
    card-days with a fair value to tune on (`min_band_rows`). More prices are needed; trying again
    on the same ones cannot help."""


def earliest_forward_day(series: DailySeries) -> pd.Timestamp | None:
    """The first day a model trained on the days before it can value (None: not enough days)."""
    days = series.prices["day"].drop_duplicates().sort_values()
    return None if len(days) < MIN_TRAIN_DAYS else days.iloc[MIN_TRAIN_DAYS - 1] + pd.Timedelta(days=1)


def last_priced_days_start(series: DailySeries, n: int) -> pd.Timestamp:
    """Where the last `n` priced days (days with at least one price) begin: the day after the
    priced day before them, or the first priced day when there are no more than n. The rows on or
    after it are those n days, `series.before(it)` all the others. Counted in priced days, not
    calendar days: after a gap in the prices (bundled prices that end, then a collector's first
    day months later) the last n calendar days held only the days after the gap, which no window
    reaches yet, so training found nothing to tune on and a forward window nothing to score.
    Without a gap it is the calendar rule's day, last day - n + 1. The one rule for every window
    of the last n days of a daily market: training's tuning and band windows here, the version's
    holdout and the gates' window (fairvalue.kinds, fairvalue.lifecycle)."""
    days = series.prices["day"].drop_duplicates().sort_values()
    before = days.iloc[-n - 1] if len(days) > n else days.iloc[0] - pd.Timedelta(days=1)
    return before + pd.Timedelta(days=1)


def fit(series: DailySeries, params: DailyParams | None = None, cuts: Cuts | None = None) -> DailyFairValueModel:
    """Choose W and alpha on the last `tune_days` priced days of `series`, then the band quantiles
    on the last `band_days` priced days. TooFewPrices when the prices cannot train a model.
    `cuts`: of a series `series` is a cut of (a replay's), to read the chosen matrices from."""
    params = params or DailyParams()
    n_days = 0 if series.prices.empty else series.prices["day"].nunique()
    if n_days < MIN_TRAIN_DAYS:
        raise TooFewPrices(f"only {n_days} days of prices; a daily model needs at least {MIN_TRAIN_DAYS}")
    tune_from = last_priced_days_start(series, params.tune_days)
    # Tuning reads only its days and the history their windows need.
    recent = DailySeries(series.items, series.prices[
        series.prices["day"] >= tune_from - pd.Timedelta(days=max(params.windows) + 28 + CARRY_DAYS)])
    tuning, best, levels = [], None, _levels(recent)
    for window in params.windows:
        parts = _window_parts(recent, window, levels=levels)
        for alpha in params.alphas:
            fair, price = _valued_since(_combine(parts, alpha), tune_from)
            if len(price) < params.min_band_rows:
                continue
            mape = valuation_metrics(fair, price)["mape"]
            tuning.append({"window": window, "alpha": alpha, "mape": mape, "n": len(price)})
            if best is None or mape < best[0]:
                best = (mape, window, alpha)
    if best is None:
        raise TooFewPrices(f"too few card-days with a fair value in the last {params.tune_days} priced days to tune "
                           f"on (need {params.min_band_rows} for some window of {list(params.windows)} days): a "
                           "card needs a few days of prices in a window before it has a fair value")
    _, window, alpha = best
    m = cuts.matrices(series, window, alpha) if cuts is not None else matrices(series, window, alpha)
    z = ((m.log_price - m.log_fair) / m.scale)
    z = z[z.index >= last_priced_days_start(series, params.band_days)]
    long = z.stack().rename("z").reset_index()
    long.columns = ["day", "item_key", "z"]
    if long.empty:  # a band of no residuals would be NaN: every published p10/p90 unusable
        raise TooFewPrices(f"no card-day with a fair value in the last {params.band_days} priced days to fit the "
                           "band on")
    long["category"] = series.items["category"].reindex(long["item_key"]).to_numpy()
    band = {"*": _band(long["z"])}
    for category, group in long.groupby("category"):
        if len(group) >= params.min_band_rows:
            band[str(category)] = _band(group["z"])
    return DailyFairValueModel(window, alpha, band, params={**params.as_dict(), "window": window, "alpha": alpha},
                               tuning=tuning)


def _valued_since(m: Matrices, since: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """(fair value, price) of each card-day from `since` on that has both, in value_days' order
    (day, then card): what tuning scores, without the long frame value_days builds for an answer."""
    days = m.log_price.index >= since
    log_price, log_fair = m.log_price.to_numpy()[days].ravel(), m.log_fair.to_numpy()[days].ravel()
    both = np.isfinite(log_price) & np.isfinite(log_fair)
    return np.exp(log_fair[both]), np.exp(log_price[both])


def _band(z: pd.Series) -> tuple[float, float]:
    lo, hi = np.nanquantile(z.to_numpy(dtype=float), Z_QUANTILES)
    return float(min(lo, 0.0)), float(max(hi, 0.0))
