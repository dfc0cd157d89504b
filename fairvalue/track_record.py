"""The live track record: every sale in a window scored against the last snapshot PUBLISHED
before it (forward only, never a retroactive prediction), then valuation metrics overall, by
segment and over time, and the strategy backtest on the same pairs. A daily-priced collection
(cards) is judged on replayed card-days instead (docs/cards.md), for both answers.

Both answers are cached in this process, keyed by the window and by what could change them
(the newest published snapshot, the newest sale, the sale count, the thresholds; for
/performance also the listings and the hour, since an ask's fate settles as time passes), so a
page that asks again costs a few cheap queries; new data makes a new key. The signals' part of
/performance is fairvalue/signal_record.py.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from fairvalue import kinds, signal_record
from fairvalue.answers import check_window, default_start, iso, parse_window, rounded, rounded_all
from fairvalue.errors import BadInput
from fairvalue.forward_values import published_values
from fairvalue.reads import collection_row
from fairvalue.settings import get_settings
from models.backtest import backtest
from models.diagnostics import item_segments, segment_metrics
from models.features import ITEM_ATTRIBUTES, attribute_text
from models.market_index import daily_index
from models.metrics import valuation_metrics
from storage import snapshots
from storage.db import session_scope
from storage.tables import Collection, DailyPrice, Item, Listing, MarketDay, NowcastSnapshot, Sale

DEFAULT_WINDOW = timedelta(days=90)
MAX_POINTS = 2000  # predicted-vs-actual points returned (the most recent ones)
_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # answers, and the daily replays they share
_CACHE_SIZE = 32
_LOCK = threading.Lock()


def _cached(key: tuple, compute) -> Any:
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = compute()
    with _LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def _window(session: Session, coll: Collection, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """[from, to): default the 90 days up to the latest sale, so bundled history has a window."""
    t0, t1 = parse_window(start, end)
    default_to = None
    if t1 is None:
        last = session.exec(select(func.max(Sale.ts)).where(Sale.collection_id == coll.id)).one()
        t1, default_to = (((last + timedelta(seconds=1)), "a second after the latest sale") if last
                          else (datetime.now(UTC), "now: there are no sales yet"))
    if t0 is None:
        t0 = default_start(t1, DEFAULT_WINDOW)
    check_window(t0, t1, default_to)
    return t0, t1


def _data_version(session: Session, coll: Collection) -> tuple:
    snap = session.exec(select(func.max(NowcastSnapshot.id)).where(
        NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status == snapshots.PUBLISHED)).one()
    sales = session.exec(select(func.count(), func.max(Sale.id)).where(Sale.collection_id == coll.id)).one()
    return (snap, *sales)


def _listings_version(session: Session, coll: Collection) -> tuple:
    return tuple(session.exec(select(func.count(), func.max(Listing.id)).where(Listing.collection_id == coll.id)).one())


def forward_pairs(session: Session, coll: Collection, t0: datetime, t1: datetime) -> tuple[pd.DataFrame, dict]:
    """(scored, counts): sales with t0 <= ts < t1, each with the value of the snapshot published
    last before it (models.live.score_sales).
    Suspected wash trades are not scored; counts["wash_trades"] says how many, by reason."""
    stored = pd.DataFrame(session.exec(select(Sale.event_id, Sale.ts, Sale.item_key, Sale.price, Sale.wash_reason)
                                       .where(Sale.collection_id == coll.id, Sale.ts >= t0, Sale.ts < t1)).all(),
                          columns=["event_id", "ts", "item_key", "price", "wash_reason"])
    wash = stored["wash_reason"].dropna().value_counts().sort_index()
    sales = stored[stored["wash_reason"].isna()].drop(columns="wash_reason").reset_index(drop=True)
    scored, counts = published_values(session, coll, sales, t1)
    counts["wash_trades"] = {str(reason): int(n) for reason, n in wash.items()}
    return scored, counts


def _scored_items(session: Session, coll: Collection, item_keys: pd.Series) -> pd.DataFrame:
    """One row per item among `item_keys`, indexed by item_key: what item_segments reads (type,
    accessory count, the attributes of features.ITEM_ATTRIBUTES)."""
    rows = session.exec(select(Item.item_key, Item.item_type, Item.attributes).where(
        Item.collection_id == coll.id, Item.item_key.in_(sorted(set(item_keys))))).all()
    attributes = [a if isinstance(a, dict) else {} for _, _, a in rows]
    return pd.DataFrame({"item_type": [t for _, t, _ in rows],
                         "accessory_count": [a.get("accessory_count") for a in attributes]}
                        | {name: [attribute_text(a.get(name)) for a in attributes] for name in ITEM_ATTRIBUTES},
                        index=pd.Index([k for k, _, _ in rows], name="item_key"))


def _metrics(frame: pd.DataFrame) -> dict[str, Any]:
    if frame.empty:
        return {"n": 0}
    return valuation_metrics(frame["fair_value"].to_numpy(), frame["price"].to_numpy(),
                             frame["p10"].to_numpy(), frame["p90"].to_numpy())


def _floor_baseline(session: Session, coll: Collection, scored: pd.DataFrame) -> dict[str, Any]:
    """The previous-day floor known when the snapshot was published, scored on the same sales."""
    from models.features import floor_before

    if scored.empty:
        return {"n": 0}
    days = pd.DataFrame(session.exec(select(MarketDay.day, MarketDay.floor).where(
        MarketDay.collection_id == coll.id, MarketDay.floor.is_not(None)).order_by(MarketDay.day)).all(),
        columns=["day", "floor"])
    days["day"] = pd.to_datetime(days["day"]).astype("datetime64[ns]")
    floor = floor_before(days, scored["published_at"])
    return valuation_metrics(floor, scored["price"].to_numpy())


def _series(scored: pd.DataFrame, t0: datetime, t1: datetime) -> list[dict[str, Any]]:
    """Forward error per day (windows up to 31 days) or per week."""
    if scored.empty:
        return []
    # pandas names a week by its last day: "W-SUN" is the week Monday..Sunday ("W-MON" started on Tuesdays).
    freq = "D" if t1 - t0 <= timedelta(days=31) else "W-SUN"
    periods = scored["ts"].dt.to_period(freq).dt.start_time
    out = []
    for start, group in scored.groupby(periods, sort=True):
        m = _metrics(group)
        out.append({"period_start": start.date().isoformat(), **m})
    return out


def performance(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Forward valuation metrics over [from, to): overall, the previous-day floor on the same
    sales, by segment (models.diagnostics.item_segments: type, accessory count, gender, skin tone,
    price band of the fair value), per period, and the
    most recent predicted-vs-actual points."""
    with session_scope() as session:
        coll = collection_row(session, slug)
        if kinds.is_daily(coll):
            return _daily_performance(session, coll, start, end)
        t0, t1 = _window(session, coll, start, end)
        settings = get_settings()
        # An ask's fate settles as time passes, so the answer is recomputed at least hourly.
        now = datetime.now(UTC)
        key = ("performance", coll.id, t0, t1, _data_version(session, coll), _listings_version(session, coll),
               settings.buy_below, settings.sell_above, settings.signal_gain, settings.signal_horizon_days,
               now.replace(minute=0, second=0, microsecond=0))

        def compute() -> dict[str, Any]:
            scored, counts = forward_pairs(session, coll, t0, t1)
            sales = signal_record.signal_sales(session, coll, t0, t1, settings)  # both signal records read it
            segments = item_segments(_scored_items(session, coll, scored["item_key"]), scored["item_key"],
                                     scored["fair_value"])
            segments = segments[[c for c in segments.columns if segments[c].notna().any()]]
            table = segment_metrics(scored["fair_value"], scored["price"], segments, scored["p10"],
                                    scored["p90"]) if len(scored) else pd.DataFrame()
            recent = scored.tail(MAX_POINTS)
            return rounded_all({
                "collection": coll.slug, "currency": coll.currency,
                "window": {"from": iso(t0), "to": iso(t1)},
                "method": "each sale scored against the last snapshot published strictly before it",
                "counts": counts,
                "model": _metrics(scored),
                "previous_day_floor": _floor_baseline(session, coll, scored),
                "signals": signal_record.sale_signals(scored, sales, settings),
                "ask_signals": signal_record.ask_signals(session, coll, t0, t1, settings, now, sales),
                "segments": table.to_dict(orient="records"),
                "series": _series(scored, t0, t1),
                "points": [{"timestamp": iso(ts.to_pydatetime()), "item_id": k, "price": p, "fair_value": f,
                            "p10": lo, "p90": hi, "snapshot_id": int(s)}
                           for ts, k, p, f, lo, hi, s in zip(
                               recent["ts"], recent["item_key"], recent["price"], recent["fair_value"],
                               recent["p10"], recent["p90"], recent["snapshot_id"], strict=True)],
                "points_truncated": len(scored) > MAX_POINTS,
            })

        return _cached(key, compute)


def _prices_version(session: Session, coll: Collection) -> tuple:
    """What a cached daily-priced answer depends on: the price rows, their last day and their
    newest write. A collector that corrects a day it had overwrites the row (storage.prices) and
    moves neither the count nor the last day, only `updated_at`. Read before the prices: a write
    between the two then leaves newer prices under an older key (recomputed next time), never older
    prices under the newer key (served until the next write)."""
    return tuple(session.exec(select(func.count(), func.max(DailyPrice.day), func.max(DailyPrice.updated_at))
                              .where(DailyPrice.collection_id == coll.id)).one())


def _daily_window(series, start: str | None, end: str | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[from, to) in whole days for a daily-priced collection: default the 60 days up to the
    latest price, never starting before a model could be trained."""
    from models.daily import earliest_forward_day

    t0, t1 = parse_window(start, end)
    default_to = None
    if t1:  # every day the window touches, as /market reads it: a `to` inside a day takes that day in
        t1 = pd.Timestamp(t1).tz_convert("UTC").tz_localize(None).ceil("D")
    elif len(series.prices):
        t1, default_to = series.prices["day"].max() + pd.Timedelta(days=1), "the end of the latest price's day"
    else:
        t1, default_to = pd.Timestamp(datetime.now(UTC)).tz_localize(None).normalize(), "today: there are no prices yet"
    earliest = earliest_forward_day(series)
    if t0:
        t0 = pd.Timestamp(t0).tz_convert("UTC").tz_localize(None).normalize()
    else:  # the default window never starts before a model could be trained
        t0 = max(t1 - pd.Timedelta(days=60), earliest) if earliest is not None else t1 - pd.Timedelta(days=60)
    if t1 <= t0 and not start:  # `from` defaulted to the first day a model could value: `to` is before it
        raise BadInput(f"to must be after the earliest start, {t0.date().isoformat()} (a model needs days before it)")
    check_window(t0, t1, default_to)
    return t0, t1


def _daily_replay(coll: Collection, version: tuple, series, t0: pd.Timestamp, t1: pd.Timestamp, settings) -> tuple:
    """The replayed card-days of [t0, t1) (fairvalue.evaluation.replay_daily_rows), nearly all the
    time of either daily answer: replayed once for /performance and /backtest of one window."""
    from fairvalue.evaluation import replay_daily_rows

    key = ("daily-replay", coll.id, t0, t1, version, settings.retrain_max_age_days, settings.buy_below,
           settings.sell_above)
    return _cached(key, lambda: replay_daily_rows(series, t0, t1, settings))


def _daily_performance(session: Session, coll: Collection, start: str | None, end: str | None) -> dict[str, Any]:
    """A daily-priced collection (cards): the replay KPIs of docs/cards.md over [from, to) — each
    card-day valued by a model trained on days before it (weekly retrains), so the figures are
    forward — with MAPE/RMSE per card and category and the BUY/SELL precision and recall.
    Default window: the 60 days up to the latest price."""
    from fairvalue.evaluation import NotEnoughHistory, evaluate_daily

    version = _prices_version(session, coll)  # before the load: see _prices_version
    series = kinds.kind_of(coll).load(session, coll)
    if series.prices.empty:
        return {"collection": coll.slug, "currency": coll.currency, "kind": "daily_prices", "model": {"n": 0}}
    t0, t1 = _daily_window(series, start, end)
    key = ("daily-performance", coll.id, t0, t1, version)

    def compute() -> dict[str, Any]:
        settings = get_settings().for_collection(coll.slug)
        try:
            report = evaluate_daily(series, t0, t1, settings,
                                    replay=_daily_replay(coll, version, series, t0, t1, settings))
        except NotEnoughHistory as exc:
            raise BadInput(str(exc)) from None
        report.update(collection=coll.slug, currency=coll.currency, kind="daily_prices",
                      method="replay: each card-day valued by a model trained on days before it")
        return rounded_all(report)

    return _cached(key, compute)


def _drawdown(equity: list[list[Any]]) -> list[list[Any]]:
    peak, out = 1.0, []
    for day, value in equity:
        if value is None:
            out.append([day, None])
            continue
        peak = max(peak, value)
        out.append([day, rounded(1 - value / peak)])
    return out


def backtest_results(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """models.backtest on the live forward pairs of [from, to): buying what the published
    value marked undervalued (price <= fair value x (1 - buy_below)) against buying every
    scored sale; exits are the item's next sale within the horizon, else marked to the index."""
    settings = get_settings()
    with session_scope() as session:
        coll = collection_row(session, slug)
        if kinds.is_daily(coll):
            return _daily_backtest(session, coll, start, end)
        t0, t1 = _window(session, coll, start, end)
        horizon = timedelta(days=settings.backtest_horizon_days)
        key = ("backtest", coll.id, t0, t1, settings.buy_below, settings.backtest_horizon_days,
               _data_version(session, coll))

        def compute() -> dict[str, Any]:
            scored, counts = forward_pairs(session, coll, t0, t1)
            # Exits and the market index, from clean sales only (docs/backtest.md): a suspected wash
            # trade is no price anyone could have sold at.
            sales = signal_record.clean(signal_record.window_sales(session, coll, t0 - signal_record.INDEX_LOOKBACK,
                                                                  t1 + horizon))
            predictions = pd.DataFrame({"event_id": scored["event_id"], "timestamp": scored["ts"],
                                        "item_id": scored["item_key"], "price": scored["price"],
                                        "fair_value": scored["fair_value"], "p10": scored["p10"],
                                        "p90": scored["p90"]})
            result = backtest(predictions, sales, daily_index(sales), threshold=settings.buy_below,
                              horizon_days=settings.backtest_horizon_days).as_dict()
            for name in ("buy_all", "strategy", "below_market"):
                result[name]["drawdown"] = _drawdown(result[name]["equity"])
            return rounded_all({"collection": coll.slug, "window": {"from": iso(t0), "to": iso(t1)},
                           "method": "live forward pairs; rules in docs/backtest.md", "counts": counts, **result})

        return _cached(key, compute)


def _daily_backtest(session: Session, coll: Collection, start: str | None, end: str | None) -> dict[str, Any]:
    """A daily-priced collection (cards): models/daily_backtest.py on the replayed card-days
    /performance scores (the same window rules), holding each day what the model marks
    undervalued against every priced card; rules in docs/cards.md."""
    from fairvalue.evaluation import NotEnoughHistory, backtest_daily
    from models.daily_backtest import daily_backtest

    settings = get_settings().for_collection(coll.slug)
    version = _prices_version(session, coll)  # before the load: see _prices_version
    series = kinds.kind_of(coll).load(session, coll)
    t0, t1 = _daily_window(series, start, end)
    key = ("daily-backtest", coll.id, t0, t1, settings.buy_below, settings.retrain_max_age_days, version)

    def compute() -> dict[str, Any]:
        if series.prices.empty:  # nothing to replay yet: an empty report, as /performance answers
            result = daily_backtest(series.prices.assign(fair_value=[]), series.prices, settings.buy_below).as_dict()
        else:
            try:
                result = backtest_daily(series, t0, t1, settings,
                                        replay=_daily_replay(coll, version, series, t0, t1, settings))
            except NotEnoughHistory as exc:
                raise BadInput(str(exc)) from None
        for name in ("buy_all", "strategy"):
            result[name]["drawdown"] = _drawdown(result[name]["equity"])
        return rounded_all({"collection": coll.slug, "currency": coll.currency, "kind": "daily_prices",
                       "window": {"from": iso(t0.to_pydatetime()), "to": iso(t1.to_pydatetime())},
                       "method": "replayed card-days (as /performance), each held one day; rules in docs/cards.md",
                       **result})

    return _cached(key, compute)
