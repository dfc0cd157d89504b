"""The database reads of the API about a collection and its items, as plain functions returning
JSON-ready dicts: the collection lookup every read starts from, the list of collections, a
collection's summary, an item's published history and its explanation.

Each function takes a collection slug and its parameters, opens its own session, and raises
fairvalue.errors.NotFound / BadInput / NotReady / Lost (404 / 400 / 503 / 500 over HTTP;
Unavailable, a NotReady, is a 503 with a Retry-After). Nothing here
knows about HTTP, so server-rendered pages call the same functions the JSON handlers do. The
other reads, one module per resource: fairvalue/item_reads.py (valuations), signal_reads.py,
market_reads.py, model_reads.py (versions, decisions, training requests), track_record.py
(performance, backtest), queue_reads.py (broker and workers); answers.py holds what they share.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from fairvalue.answers import check_item_key, iso, parse_window, rounded, rounded_all, snapshot_reference
from fairvalue.errors import BadInput, NotFound, NotReady, unread_artifact
from fairvalue.settings import get_settings
from models.signals import SIGNALS
from storage import snapshots
from storage.artifacts import ArtifactError
from storage.counts import item_count, prices_span, rejected_by_reason, sales_span
from storage.db import session_scope
from storage.ingest import DAILY_PRICES, MADE_BY
from storage.registry import CHAMPION, get_alias, version_numbers
from storage.snapshots import published_snapshot
from storage.tables import (
    Collection,
    DailyPrice,
    Item,
    MarketDay,
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    Sale,
)

# --- collection -----------------------------------------------------------------------------

def collection_row(session: Session, slug: str | None = None) -> Collection:
    slug = slug or get_settings().collection
    found = session.exec(select(Collection).where(Collection.slug == slug)).first()
    if found is None:
        made_by = MADE_BY.get(slug)
        advice = f": not set up yet; {made_by} makes it" if made_by else ""
        raise NotFound(f"unknown collection {slug[:64]!r}{advice}")
    return found


def _snapshot_info(snap: NowcastSnapshot | None, version: int | None = None) -> dict | None:
    if snap is None:
        return None
    age = (datetime.now(UTC) - snap.published_at).total_seconds() if snap.published_at else None
    return {**snapshot_reference(snap.id, snap.as_of, snap.valued_at, snap.published_at),
            "data_cutoff": iso(snap.data_cutoff), "n_items": snap.n_items, "model_version": version,
            "age_seconds": rounded(age, 1)}


def collections() -> dict[str, Any]:
    """Every collection this deployment serves, with its item count and published snapshot: where a
    client finds the slugs of /v1/collections/{slug}. The default one is FAIRVALUE_COLLECTION."""
    with session_scope() as session:
        rows = session.exec(select(Collection).order_by(Collection.slug)).all()
        n_items = dict(session.exec(select(Item.collection_id, func.count()).group_by(Item.collection_id)).all())
        snapshots = {coll.id: published_snapshot(session, coll) for coll in rows}
    return {"default": get_settings().collection, "collections": [
        {"slug": coll.slug, "name": coll.name, "kind": coll.kind, "currency": coll.currency,
         "items": n_items.get(coll.id, 0),
         "snapshot": None if snapshots[coll.id] is None else snapshot_reference(
             snapshots[coll.id].id, snapshots[coll.id].as_of, snapshots[coll.id].valued_at,
             snapshots[coll.id].published_at)}
        for coll in rows]}


def summary(slug: str | None = None) -> dict[str, Any]:
    """Floor, index, counts and the published snapshot of one collection (a daily-priced one: its
    prices, their days and its market index instead of sales and a floor)."""
    from models.market_index import sales_index

    with session_scope() as session:
        coll = collection_row(session, slug)
        if coll.kind == DAILY_PRICES:
            return _daily_summary(session, coll)
        last_floor = session.exec(select(MarketDay.day, MarketDay.floor).where(
            MarketDay.collection_id == coll.id, MarketDay.floor.is_not(None)).order_by(MarketDay.day.desc())).first()
        last_eth = session.exec(select(MarketDay.day, MarketDay.eth_usd).where(
            MarketDay.collection_id == coll.id, MarketDay.eth_usd.is_not(None))
            .order_by(MarketDay.day.desc())).first()
        n_sales, first_sale, last_sale = sales_span(session, coll)
        shared = _summary_shared(session, coll)
        recent = []
        if last_sale is not None:
            recent = session.exec(select(Sale.ts, Sale.price).where(  # the sales index: clean sales, as the model's
                Sale.collection_id == coll.id, Sale.wash_reason.is_(None),
                Sale.ts >= last_sale - timedelta(days=14))).all()
    index = None
    if recent:
        frame = pd.DataFrame(recent, columns=["ts", "price"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
        frame = frame.sort_values("ts", kind="stable")
        day = (frame["ts"].max() + pd.Timedelta(days=1)).normalize()
        level = sales_index(frame, pd.DatetimeIndex([day])).iloc[0]
        index = {"day": day.date().isoformat(), "level": rounded(level),
                 "meaning": "25th percentile of sale prices over the last 3 days (widened to 7/14 when thin)"}
    return {
        "collection": coll.slug, "name": coll.name, "kind": coll.kind, "currency": coll.currency,
        "floor": None if last_floor is None else {"day": iso(last_floor[0]), "value": rounded(last_floor[1])},
        "eth_usd": None if last_eth is None else {"day": iso(last_eth[0]), "value": rounded(last_eth[1])},
        "index": index,
        "counts": {"items": shared["items"], "sales": n_sales, "rejected_sales": shared["rejected"],
                   "model_versions": shared["model_versions"], "signals": shared["signals"]},
        "sales_range": {"first": iso(first_sale), "last": iso(last_sale)},
        "champion": shared["champion"], "snapshot": shared["snapshot"],
    }


def _daily_summary(session: Session, coll: Collection) -> dict[str, Any]:
    """A daily-priced collection's summary: its stored prices, their first and last day, the
    refused price rows (kept in rejected_sales with the file or call they came in) and the
    market index of /market on its last day."""
    from fairvalue.kinds import kind_of
    from models.daily import MARKET_INDEX_MEANING, market_days

    n_prices, first_day, last_day = prices_span(session, coll)
    shared = _summary_shared(session, coll)
    index = None
    if n_prices:
        days = market_days(kind_of(coll).load(session, coll))
        if len(days):
            last = days.iloc[-1]
            index = {"day": last["day"].date().isoformat(), "level": rounded(last["index"]),
                     "median_price": rounded(last["median_price"]), "n_cards": int(last["n_cards"]),
                     "meaning": MARKET_INDEX_MEANING}
    return {
        "collection": coll.slug, "name": coll.name, "kind": coll.kind, "currency": coll.currency,
        "floor": None, "eth_usd": None, "index": index,
        "counts": {"items": shared["items"], "prices": n_prices, "rejected_prices": shared["rejected"],
                   "model_versions": shared["model_versions"], "signals": shared["signals"]},
        "prices_range": {"first": iso(first_day), "last": iso(last_day)},
        "champion": shared["champion"], "snapshot": shared["snapshot"],
    }


def _summary_shared(session: Session, coll: Collection) -> dict[str, Any]:
    """What every kind's summary counts alike: items, refused rows, model versions, the published
    snapshot with its signals, the champion."""
    count = func.count()
    snap = published_snapshot(session, coll)
    signals = {} if snap is None else dict(session.exec(select(NowcastRow.signal, count).where(
        NowcastRow.snapshot_id == snap.id).group_by(NowcastRow.signal)).all())
    champion = get_alias(session, coll, CHAMPION)
    versions = version_numbers(session, [snap.model_version_id] if snap else [])
    return {
        "items": item_count(session, coll),
        "rejected": sum(rejected_by_reason(session, coll).values()),
        "model_versions": session.exec(select(count).select_from(ModelVersion)
                                       .where(ModelVersion.collection_id == coll.id)).one(),
        "signals": {s: int(signals.get(s, 0)) for s in SIGNALS},
        "champion": None if champion is None else {"version": champion.version, "created_at": iso(champion.created_at)},
        "snapshot": _snapshot_info(snap, versions.get(snap.model_version_id) if snap else None),
    }


# --- items ----------------------------------------------------------------------------------

def item_history(slug: str | None, key: str, start: str | None = None, end: str | None = None,
                 limit: int = 1000) -> dict[str, Any]:
    """The values published for one item over time (oldest first) and its sales."""
    check_item_key(key)
    t0, t1 = parse_window(start, end)
    if not 1 <= limit <= 5000:
        raise BadInput("limit must be between 1 and 5000")
    with session_scope() as session:
        coll = collection_row(session, slug)
        if session.get(Item, (coll.id, key)) is None:
            raise NotFound(f"no item {key!r} in {coll.slug}")
        query = (select(NowcastSnapshot.id, NowcastSnapshot.as_of, NowcastSnapshot.published_at,
                        NowcastSnapshot.model_version_id, NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90,
                        NowcastRow.signal, NowcastSnapshot.valued_at)
                 .join(NowcastRow, NowcastRow.snapshot_id == NowcastSnapshot.id)
                 .where(NowcastSnapshot.collection_id == coll.id, NowcastSnapshot.status == snapshots.PUBLISHED,
                        NowcastSnapshot.published_at.is_not(None), NowcastRow.item_key == key))
        sales_query = select(Sale.event_id, Sale.ts, Sale.price).where(Sale.collection_id == coll.id,
                                                                       Sale.item_key == key)
        if t0:
            query = query.where(NowcastSnapshot.published_at >= t0)
            sales_query = sales_query.where(Sale.ts >= t0)
        if t1:
            query = query.where(NowcastSnapshot.published_at < t1)
            sales_query = sales_query.where(Sale.ts < t1)
        rows = session.exec(query.order_by(NowcastSnapshot.published_at.desc(), NowcastSnapshot.id.desc())
                            .limit(limit + 1)).all()  # one more than shown: is there anything older?
        truncated, rows = len(rows) > limit, rows[:limit]
        sales = session.exec(sales_query.order_by(Sale.ts, Sale.id)).all()
        versions = version_numbers(session, [r[3] for r in rows])
        prices = _daily_prices(session, coll, key, t0, t1) if coll.kind == DAILY_PRICES else None
    history = {
        "collection": coll.slug, "item_id": key, "currency": coll.currency,
        "published": [{"snapshot_id": r[0], "as_of": iso(r[1]), "valued_at": iso(r[8]), "published_at": iso(r[2]),
                       "model_version": versions.get(r[3]), "fair_value": rounded(r[4]),
                       "p10": rounded(r[5]), "p90": rounded(r[6]), "signal": r[7]} for r in reversed(rows)],
        "truncated": truncated,
        "sales": [{"event_id": s[0], "timestamp": iso(s[1]), "price": rounded(s[2])} for s in sales],
    }
    if prices is not None:  # a card has no sales, but a market price per day
        history["prices"] = prices
    return history


def _daily_prices(session: Session, coll: Collection, key: str, t0, t1) -> list[dict[str, Any]]:
    query = select(DailyPrice.day, DailyPrice.price).where(DailyPrice.collection_id == coll.id,
                                                           DailyPrice.item_key == key)
    # Every day the window touches, as /market reads it: a `to` inside a day takes that day in.
    if t0:
        query = query.where(DailyPrice.day >= t0.date())
    if t1:
        query = query.where(DailyPrice.day <= (t1 - timedelta(microseconds=1)).date())
    return [{"day": day.isoformat(), "price": rounded(price)}
            for day, price in session.exec(query.order_by(DailyPrice.day)).all()]


def item_explanation(slug: str | None, key: str, top: int = 5, comps: int = 10) -> dict[str, Any]:
    """Drivers vs a typical item and comparable sales (fairvalue/explanations.py, models/explain.py)."""
    from fairvalue import explanations

    check_item_key(key)
    for name, value, (low, high) in (("top", top, explanations.TOP_RANGE), ("comps", comps, explanations.COMPS_RANGE)):
        if not low <= value <= high:
            raise BadInput(f"{name} must be between {low} and {high}, got {value}")
    with session_scope() as session:
        coll = collection_row(session, slug)
    try:
        body = explanations.explain_item(key, coll.slug, top, comps)
    except explanations.UnknownItem as exc:
        raise NotFound(str(exc)) from None
    except explanations.NotExplainable as exc:
        raise NotReady(str(exc)) from None
    except ArtifactError as exc:  # Lost (gone, corrupt) or Unavailable (the store does not answer now)
        raise unread_artifact(exc, "the model of the published snapshot",
                              f"explanation of {key} in {coll.slug}") from None
    # Every number, as every answer's: the drivers' effects, the values and the cards' prices came
    # from the model (a price through a log and an exp: 798.8100000000003).
    return rounded_all(body)
