"""What differs between kinds of collection, behind one small interface the jobs dispatch on.

- unique_items (CryptoPunks): rare sales of unique items; the gradient-boosted model of
  models/estimator.py on models/features.py; a value is scored against the next sales.
- daily_prices (trading cards): a fixed universe priced every day; models/daily.py. A snapshot
  row values the card's latest market day from the days before it, so the row itself is a forward
  pair (fair value, that day's price) and live error is read from the published rows.

Everything else (snapshots and the pointer swap, the registry, training requests under a lease,
gates, shadows, the monitor) is shared: fairvalue/pipeline.py and fairvalue/lifecycle/ call
`kind_of(collection)` where the kinds differ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, or_
from sqlmodel import Session, select

from fairvalue.answers import iso
from fairvalue.settings import Settings
from models import daily, gates
from models.diagnostics import segment_metrics
from models.metrics import valuation_metrics
from models.nowcast import valuation_moment, value_all_items
from storage import snapshots
from storage.ingest import DAILY_PRICES
from storage.tables import Collection, DailyPrice, NowcastRow, NowcastSnapshot, Sale


class UniqueItems:
    name = "unique_items"
    observations = "sales"

    def count_after(self, session: Session, coll: Collection, end: datetime, trained_at: datetime | None = None) -> int:
        """The clean sales (not suspected wash trades) after `end`, or stored after `trained_at`
        (a backfill of older sales): what a training after a model whose data ended then would
        learn from that it did not."""
        new = Sale.ts > end if trained_at is None else or_(Sale.ts > end, Sale.ingested_at > trained_at)
        return session.exec(select(func.count()).select_from(Sale).where(
            Sale.collection_id == coll.id, new, Sale.wash_reason.is_(None))).one()

    def load(self, session: Session, coll: Collection, stored_by: datetime | None = None,
             read_under: str | None = None, listings_at: datetime | None = None):
        """The market the model may know; with `stored_by` or `read_under`, only what a snapshot
        read (its data_read_at, or on PostgreSQL its data_snapshot: storage.market); with
        `listings_at`, the listings that decide the asks open then (a nowcast's signals)."""
        from storage.market import load_market_data

        return load_market_data(session, coll, stored_by=stored_by, read_under=read_under,
                                listings_at=listings_at)

    def value_all(self, model, data, moment: pd.Timestamp, settings: Settings,
                  asked_at: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every item valued at `moment` (valued_at's answer), from data before it; the signals
        read the asks open at `asked_at` (the nowcast's own time: a listing is a price now, even
        in a market silent for longer than the staleness limit)."""
        return value_all_items(model, data, moment, settings.buy_below, settings.sell_above,
                               settings.signal_max_age_days, threads=settings.predict_threads, asks_at=asked_at)

    def valued_at(self, data, t: pd.Timestamp, settings: Settings) -> pd.Timestamp:
        """The moment a nowcast asked for at t values the items at: t, unless the market had
        gone silent (models.nowcast.valuation_moment)."""
        return valuation_moment(data, t, settings.market_stale_after_days)

    def data_cutoff(self, data, t: pd.Timestamp):
        seen = data.sales[data.sales["ts"] < t]["ts"]
        return seen.max().tz_localize("UTC").to_pydatetime() if len(seen) else None

    def gate_config(self, settings: Settings) -> gates.GateConfig:
        return _gate_config(settings, observations="sales", market_level="floor")


class DailyPrices:
    name = DAILY_PRICES
    observations = "prices"

    def count_after(self, session: Session, coll: Collection, end: datetime, trained_at: datetime | None = None) -> int:
        """The daily prices of days after `end` (the last day a model trained on), or stored or
        revised after `trained_at`."""
        later = DailyPrice.day > _utc_day(end)
        new = later if trained_at is None else or_(later, DailyPrice.updated_at > trained_at)
        return session.exec(select(func.count()).select_from(DailyPrice).where(
            DailyPrice.collection_id == coll.id, new)).one()

    def load(self, session: Session, coll: Collection, stored_by: datetime | None = None,
             read_under: str | None = None, listings_at: datetime | None = None) -> daily.DailySeries:
        """Every card and daily price. `stored_by` and `read_under` change nothing: a row is a
        card's price of a day, final once the day is over (docs/cards.md), and a nowcast values
        each card at its latest market day before its own, so a price stored after it read is of
        a later day. Cards take no listings (`listings_at` changes nothing)."""
        from storage.prices import load_daily_series

        return load_daily_series(session, coll)

    def value_all(self, model: daily.DailyFairValueModel, data: daily.DailySeries, t: pd.Timestamp,
                  settings: Settings, asked_at: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every active card at its latest market day before t (cards take no listings)."""
        active = data.items.index[data.items["active"]]
        return model.value_at(data, t, settings.buy_below, settings.sell_above, settings.signal_max_age_days,
                              item_keys=active)

    def valued_at(self, data: daily.DailySeries, t: pd.Timestamp, settings: Settings) -> pd.Timestamp:
        """A card's row values its latest market day before the moment, each its own; the moment is
        t, unless the prices had stopped (models.daily.valuation_moment: the punks' rule)."""
        return daily.valuation_moment(data, t, settings.market_stale_after_days)

    def data_cutoff(self, data: daily.DailySeries, t: pd.Timestamp):
        known = data.before(t)
        return None if known.last_day is None else known.last_day.tz_localize("UTC").to_pydatetime()

    def params(self, overrides: dict[str, Any]) -> daily.DailyParams:
        allowed = set(daily.DailyParams.__dataclass_fields__)
        unknown = set(overrides) - allowed
        if unknown:
            raise ValueError(f"unknown training params {sorted(unknown)}; known: {sorted(allowed)}")
        return daily.DailyParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})

    def span(self, data: daily.DailySeries) -> tuple[Any, Any, int]:
        days = data.prices["day"]
        return (days.min().tz_localize("UTC").to_pydatetime(), days.max().tz_localize("UTC").to_pydatetime(),
                len(data.prices))

    # --- scoring --------------------------------------------------------------------------

    def evaluation(self, name: str, model: daily.DailyFairValueModel, data: daily.DailySeries,
                   start: pd.Timestamp) -> tuple[gates.Evaluation, pd.DataFrame]:
        """The model on every (day >= start, card): metrics, per-category segments and sanity.
        Monotone: a category index 10 % higher must never lower a fair value (true by
        construction: log FV is the index plus terms that do not depend on it; checked anyway,
        through the same formula, so a change to it that broke this would fail the gate)."""
        m, lifted = daily.matrices_and_lifted(data, model.window, model.alpha, np.log(1.1))
        rows = model.value_days(data, m)
        rows = rows[rows["day"] >= start].reset_index(drop=True)
        up = model.value_days(data, lifted)
        up = up[up["day"] >= start].reset_index(drop=True)
        monotone = bool(np.all(up["fair_value"].to_numpy() >= rows["fair_value"].to_numpy() * (1 - 1e-9)))
        fair, price = rows["fair_value"].to_numpy(), rows["price"].to_numpy()
        lo, hi = rows["p10"].to_numpy(), rows["p90"].to_numpy()
        segments = pd.DataFrame({"category": rows["category"].to_numpy()})
        return gates.Evaluation(name=name, metrics=valuation_metrics(fair, price, lo, hi),
                                segments=segment_metrics(fair, price, segments, lo, hi),
                                sanity=gates.sanity(fair, lo, hi, monotone)), rows

    def baseline(self, data: daily.DailySeries, rows: pd.DataFrame) -> dict[str, Any]:
        """The previous-price baseline on the same rows."""
        base = rows[["day", "item_key", "price"]].merge(daily.previous_price(data), on=["day", "item_key"], how="left")
        return valuation_metrics(base["baseline"].to_numpy(), base["price"].to_numpy())

    def gate_config(self, settings: Settings) -> gates.GateConfig:
        # The previous price is recorded, not a hard gate: a fair value that ignores a spike is
        # farther from the market during the spike than yesterday's price, by design (docs/cards.md).
        # A scored row is a card's price of a day; the monotone check lifts the category index.
        return _gate_config(settings, must_beat_floor=False, observations="card-day prices",
                            market_level="category index")

    # --- live error -----------------------------------------------------------------------

    def live_scored(self, session: Session, coll: Collection, since, statuses=(snapshots.PUBLISHED,),
                    model_version_id: int | None = None) -> pd.DataFrame:
        """One row per (card, valued day) from the snapshots published since `since`: the first
        snapshot that showed it. The fair value never saw the day's price, so the row is a forward
        pair; event_id is "<card>:<day>" so two models pair on the same card-days."""
        query = select(NowcastSnapshot.id, NowcastSnapshot.published_at, NowcastSnapshot.model_version_id,
                       NowcastRow.item_key, NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90,
                       NowcastRow.last_price, NowcastRow.last_sale_at).join(
            NowcastRow, NowcastRow.snapshot_id == NowcastSnapshot.id).where(
            NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status.in_(statuses),
            NowcastSnapshot.published_at.is_not(None), NowcastSnapshot.published_at >= since,
            NowcastRow.last_price.is_not(None))
        if model_version_id is not None:
            query = query.where(NowcastSnapshot.model_version_id == model_version_id)
        columns = ["snapshot_id", "published_at", "model_version_id", "item_key", "fair_value", "p10", "p90",
                   "price", "ts"]
        frame = pd.DataFrame(session.exec(query).all(), columns=columns)
        out_columns = ["event_id", "ts", "item_key", "price", "fair_value", "p10", "p90", "snapshot_id",
                       "published_at", "model_version_id"]
        if frame.empty:
            return pd.DataFrame(columns=out_columns)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None)
        frame["event_id"] = frame["item_key"] + ":" + frame["ts"].dt.strftime("%Y-%m-%d")
        frame = frame.sort_values(["published_at", "snapshot_id"]).drop_duplicates("event_id", keep="first")
        return frame.sort_values(["ts", "event_id"]).reset_index(drop=True)[out_columns]


def _utc_day(moment: datetime):
    """The UTC day of a moment (a naive one is UTC, as every time here)."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _gate_config(settings: Settings, **per_kind: Any) -> gates.GateConfig:
    """The gates' thresholds every kind reads from the settings, and what differs by kind."""
    return gates.GateConfig(mape_margin=settings.gate_mape_margin, max_abs_bias=settings.gate_max_abs_bias,
                            segment_tolerance=settings.gate_segment_tolerance,
                            coverage_bounds=(settings.gate_coverage_min, settings.gate_coverage_max), **per_kind)


UNIQUE, DAILY = UniqueItems(), DailyPrices()


def kind_of(coll: Collection) -> UniqueItems | DailyPrices:
    return DAILY if coll.kind == DAILY_PRICES else UNIQUE


def is_daily(coll: Collection) -> bool:
    return coll.kind == DAILY_PRICES


def fit_daily(data: daily.DailySeries, overrides: dict[str, Any] | None = None) -> daily.DailyFairValueModel:
    return daily.fit(data, DAILY.params(overrides or {}))


def holdout_daily(data: daily.DailySeries, holdout_days: int) -> dict[str, Any]:
    """Forward score of a version: fit on the days before the holdout, value the holdout's days.
    The holdout is the last `holdout_days` + 1 priced days (daily.last_priced_days_start, the
    fit's rule): from `holdout_days` priced days before the last one through it, as the calendar
    rule `last day - holdout_days` had it, so without a gap the figure is the one it was; after a
    gap (bundled prices, then a collector's day months later) the calendar window held the one
    day after it, which no card has a fair value on, and the holdout scored nothing (n=0)."""
    start = daily.last_priced_days_start(data, holdout_days + 1)
    try:
        model = daily.fit(data.before(start))
    except ValueError as exc:
        return {"holdout": f"skipped: {exc}"}
    evaluation, rows = DAILY.evaluation("holdout", model, data, start)
    per_category = evaluation.segments[["value", "n", "mape", "rmse"]].to_dict(orient="records")
    return {"holdout_start": iso(start.to_pydatetime()), "model": evaluation.metrics,
            "previous_price": DAILY.baseline(data, rows), "per_category": per_category, "estimator": model.name}
