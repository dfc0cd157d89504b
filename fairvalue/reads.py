"""Everything the API and the web pages read, as plain functions returning JSON-ready dicts.

Each function takes a collection slug and its parameters, opens its own session, and raises
fairvalue.errors.NotFound / BadInput / NotReady (404 / 400 / 503 over HTTP). Nothing here
knows about HTTP, so server-rendered pages call the same functions the JSON handlers do.
The forward track record (performance, backtest) lives in fairvalue/track_record.py and the
item explanation in fairvalue/explanations.py; they are wrapped here so callers need one import.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from fairvalue.answers import (
    check_item_key,
    check_window,
    hidden,
    iso,
    iso_text,
    page_bounds,
    parse_time,
    rounded,
    snapshot_reference,
    without_operator,
)
from fairvalue.errors import BadInput, NotFound, NotReady
from fairvalue.settings import get_settings
from models import gates
from storage import requests, snapshots
from storage.db import session_scope
from storage.ingest import DAILY_PRICES, MADE_BY
from storage.registry import CHAMPION, get_alias
from storage.snapshots import PublishedValue, published_snapshot
from storage.tables import (
    Collection,
    DailyPrice,
    Item,
    MarketDay,
    ModelAlias,
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    PromotionDecision,
    RejectedSale,
    Sale,
    TrainingRequest,
)

SIGNALS = ("BUY", "SELL", "HOLD")




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


def _version_numbers(session: Session, ids) -> dict[int, int]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(session.exec(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(ids))).all())


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
        n_sales, first_sale, last_sale = session.exec(select(func.count(), func.min(Sale.ts), func.max(Sale.ts))
                                                      .where(Sale.collection_id == coll.id)).one()
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

    n_prices, first_day, last_day = session.exec(select(func.count(), func.min(DailyPrice.day),
                                                        func.max(DailyPrice.day))
                                                 .where(DailyPrice.collection_id == coll.id)).one()
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
    versions = _version_numbers(session, [snap.model_version_id] if snap else [])
    return {
        "items": session.exec(select(count).select_from(Item).where(Item.collection_id == coll.id)).one(),
        "rejected": session.exec(select(count).select_from(RejectedSale)
                                 .where(RejectedSale.collection_id == coll.id)).one(),
        "model_versions": session.exec(select(count).select_from(ModelVersion)
                                       .where(ModelVersion.collection_id == coll.id)).one(),
        "signals": {s: int(signals.get(s, 0)) for s in SIGNALS},
        "champion": None if champion is None else {"version": champion.version, "created_at": iso(champion.created_at)},
        "snapshot": _snapshot_info(snap, versions.get(snap.model_version_id) if snap else None),
    }


# --- valuations -----------------------------------------------------------------------------

def item_valuation(slug: str | None, key: str) -> dict[str, Any]:
    """Value, band, signal and last sale of one item from the published snapshot (the API's
    answer, served from the snapshot held in memory: fairvalue/item_reads.py)."""
    from fairvalue import item_reads

    return json.loads(item_reads.item(slug, key).body)


def valuations(slug: str | None, keys: list[str]) -> dict[str, Any]:
    """Many items from ONE snapshot (a concurrent publish never mixes two), plus the unknown ids."""
    from fairvalue import item_reads

    return json.loads(item_reads.valuations(slug, keys).body)


def item_history(slug: str | None, key: str, start: str | None = None, end: str | None = None,
                 limit: int = 1000) -> dict[str, Any]:
    """The values published for one item over time (oldest first) and its sales."""
    check_item_key(key)
    t0, t1 = parse_time(start, "from"), parse_time(end, "to")
    if t0 and t1 and t1 <= t0:  # as /market and /performance refuse it
        raise BadInput("to must be after from")
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
        versions = _version_numbers(session, [r[3] for r in rows])
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
    for field in ("fair_value", "floor", "typical_value"):  # the punks' explanation has all three, cards' less
        if field in body:
            body[field] = rounded(body[field])
    return body


# --- signals --------------------------------------------------------------------------------

def _encode_cursor(snapshot_id: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([snapshot_id, offset]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        snapshot_id, offset = json.loads(raw)
        # Within the columns' types (a snapshot id is an INTEGER, an offset a BIGINT), or the
        # database refuses the query; bool is an int to Python, not an id.
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (snapshot_id, offset)) \
                or not (0 < snapshot_id < 2**31 and 0 <= offset < 2**63):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput("cursor is not one this API handed out; start again without it") from None
    return snapshot_id, offset


def _has_trait(attributes: dict, trait: str) -> bool:
    """A trait matches an attribute value, or an element of a list-valued attribute (case-insensitive)."""
    wanted = trait.casefold()
    for value in attributes.values():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str | int | float) and str(v).casefold() == wanted for v in values):
            return True
    return False


def signals_page(slug: str | None = None, signal: str | None = None, item_type: str | None = None,
                 trait: str | None = None, min_deviation: float | None = None, limit: int = 50,
                 cursor: str | None = None) -> dict[str, Any]:
    """Items of the published snapshot whose signal read a market price (an open ask, or a last
    sale at most FAIRVALUE_SIGNAL_MAX_AGE_DAYS older than the valuation: item_reads.signal_prices),
    filtered, ordered by |deviation| (that price / fair value - 1) descending then item id. A
    cursor pins the snapshot it was made from, so paging through stays consistent while new
    snapshots are published."""
    if signal is not None:
        signal = signal.upper()
        if signal not in SIGNALS:
            raise BadInput(f"signal must be one of {', '.join(SIGNALS)}")
    if min_deviation is not None and not (0 <= min_deviation < 1e6):
        raise BadInput("min_deviation must be a fraction >= 0, e.g. 0.1 for 10 %")
    limit, _ = page_bounds(limit, 0)
    with session_scope() as session:
        coll = collection_row(session, slug)
        if cursor:
            snapshot_id, offset = _decode_cursor(cursor)
            snap = session.get(NowcastSnapshot, snapshot_id)
            if snap is None or snap.collection_id != coll.id or snap.status != snapshots.PUBLISHED:
                raise BadInput("cursor points at a snapshot this collection does not serve")
            if snap.rows_thinned_at is not None:  # its pages would miss most items (storage/retention.py)
                raise BadInput("cursor points at a snapshot past FAIRVALUE_RETENTION_DAYS; start again without it")
        else:
            snap, offset = published_snapshot(session, coll), 0
            if snap is None:
                raise NotReady("no published snapshot yet; run a nowcast")
        query = (select(NowcastRow.item_key, NowcastRow.fair_value, NowcastRow.p10, NowcastRow.p90,
                        NowcastRow.signal, NowcastRow.last_price, NowcastRow.last_sale_at, Item.item_type,
                        Item.attributes, NowcastRow.ask_price, NowcastRow.ask_at)
                 .join(Item, (Item.collection_id == coll.id) & (Item.item_key == NowcastRow.item_key))
                 .where(NowcastRow.snapshot_id == snap.id,
                        NowcastRow.last_price.is_not(None) | NowcastRow.ask_price.is_not(None)))
        if signal:
            query = query.where(NowcastRow.signal == signal)
        if item_type:
            query = query.where(func.lower(Item.item_type) == item_type.lower())
        rows = session.exec(query).all()
        version = _version_numbers(session, [snap.model_version_id]).get(snap.model_version_id)
    from fairvalue.item_reads import signal_prices

    rows = [r for r in rows if r[1]]
    picked = []
    for (basis, deviation), r in zip(signal_prices([PublishedValue(
            snap.id, snap.as_of, snap.published_at, snap.model_version_id, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
            snap.valued_at, r[9], r[10]) for r in rows]), rows, strict=True):
        if basis is None or (min_deviation is not None and abs(deviation) < min_deviation):
            continue
        if trait and not _has_trait(r[8] or {}, trait):
            continue
        picked.append((deviation, basis, r))
    picked.sort(key=lambda p: (-abs(p[0]), _key_order(p[2][0])))
    page = picked[offset:offset + limit]
    more = offset + limit < len(picked)
    return {
        "collection": coll.slug, "currency": coll.currency,
        "snapshot": {**snapshot_reference(snap.id, snap.as_of, snap.valued_at, snap.published_at),
                     "model_version": version},
        "filters": {"signal": signal, "type": item_type, "trait": trait, "min_deviation": min_deviation},
        "order": "abs(deviation) desc, item_id",
        "total": len(picked), "offset": offset, "limit": limit,
        "next_cursor": _encode_cursor(snap.id, offset + limit) if more else None,
        "signals": [{"item_id": r[0], "type": r[7], "signal": r[4], "fair_value": rounded(r[1]),
                     "band": {"p10": rounded(r[2]), "p90": rounded(r[3])}, "last_price": rounded(r[5]),
                     "last_sale_at": iso(r[6]), "ask_price": rounded(r[9]), "ask_at": iso(r[10]),
                     "signal_basis": basis, "deviation": rounded(d)} for d, basis, r in page],
    }


def _key_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)


# --- track record (re-exported) -------------------------------------------------------------

def performance(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    from fairvalue.track_record import performance as run

    return run(slug, start, end)


def backtest_results(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    from fairvalue.track_record import backtest_results as run

    return run(slug, start, end)


# --- models ---------------------------------------------------------------------------------

def _decision_dict(d: PromotionDecision, number: dict[int, int], people: bool = True) -> dict[str, Any]:
    return {"id": d.id, "created_at": iso(d.created_at), "decision": d.decision, "by": d.decided_by,
            # an operator's token name or "cli:<login>"
            "operator": hidden((d.numbers or {}).get("operator"), people),
            "contender": number.get(d.contender_version_id), "champion": number.get(d.champion_version_id),
            "training_request": d.training_request_id, "reason": d.reason,
            "numbers": without_operator(_stored_times(d.numbers), people)}


def _stored_times(numbers: dict) -> dict:
    """A version's metrics or a decision's numbers as stored JSON, with the times recorded before
    they were written with iso() given their Z: metrics.holdout_start, numbers.window, and the
    window of a gated version's metrics.gate_evaluation (the numbers of its decision)."""
    if not isinstance(numbers, dict):
        return numbers
    out = dict(numbers)
    if "holdout_start" in out:
        out["holdout_start"] = iso_text(out["holdout_start"])
    if isinstance(out.get("window"), dict):
        out["window"] = {k: iso_text(v) if k in ("from", "to") else v for k, v in out["window"].items()}
    if isinstance(out.get("gate_evaluation"), dict):
        out["gate_evaluation"] = _stored_times(out["gate_evaluation"])
    return out


def models_overview(slug: str | None = None, decisions_limit: int = 50, people: bool = True) -> dict[str, Any]:
    """Versions (artifact, sha256, lineage, metrics), aliases and the latest decisions (operators'
    names HIDDEN unless `people`)."""
    with session_scope() as session:
        coll = collection_row(session, slug)
        versions = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id)
                                .order_by(ModelVersion.version.desc())).all()
        number = {v.id: v.version for v in versions}
        aliases = {a.alias: number.get(a.model_version_id)
                   for a in session.exec(select(ModelAlias).where(ModelAlias.collection_id == coll.id))}
        rows = session.exec(select(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
                            .order_by(PromotionDecision.id.desc()).limit(decisions_limit)).all()
    return {
        "collection": coll.slug,
        "kind": coll.kind,
        "aliases": aliases,
        "versions": [{"version": v.version, "estimator": v.estimator, "artifact_uri": v.artifact_uri,
                      "sha256": v.sha256, "created_at": iso(v.created_at), "data_start": iso(v.data_start),
                      "data_end": iso(v.data_end), "n_train": v.n_train, "code_version": v.code_version,
                      "parent": number.get(v.parent_id), "metrics": _stored_times(v.metrics)} for v in versions],
        "decisions": [_decision_dict(d, number, people) for d in rows],
    }


def decisions(slug: str | None = None, decision: str | None = None, limit: int = 50,
              offset: int = 0, people: bool = True) -> dict[str, Any]:
    """Promotions, shadows, rejections and rollbacks, newest first (operators' names HIDDEN unless `people`)."""
    limit, offset = page_bounds(limit, offset)
    with session_scope() as session:
        coll = collection_row(session, slug)
        query = select(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
        count = select(func.count()).select_from(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
        if decision:
            if decision not in gates.RECORDED:
                raise BadInput(f"decision must be one of {', '.join(gates.RECORDED)}")
            query = query.where(PromotionDecision.decision == decision)
            count = count.where(PromotionDecision.decision == decision)
        rows = session.exec(query.order_by(PromotionDecision.id.desc()).offset(offset).limit(limit)).all()
        total = session.exec(count).one()
        number = _version_numbers(session, [i for d in rows for i in (d.contender_version_id, d.champion_version_id)])
    return {"collection": coll.slug, "total": total, "offset": offset, "limit": limit,
            "next_offset": offset + limit if offset + limit < total else None,
            "decisions": [_decision_dict(d, number, people) for d in rows]}


def training_requests(slug: str | None = None, state: str | None = None, limit: int = 200,
                      offset: int = 0, people: bool = True) -> dict[str, Any]:
    """Training requests with state, attempts, lease and result, newest first (the claiming
    worker and the asking operator HIDDEN unless `people`)."""
    limit, offset = page_bounds(limit, offset, default=200)
    with session_scope() as session:
        coll = collection_row(session, slug)
        query = select(TrainingRequest).where(TrainingRequest.collection_id == coll.id)
        if state:
            if state not in requests.STATES:
                raise BadInput(f"state must be one of {', '.join(requests.STATES)}")
            query = query.where(TrainingRequest.state == state)
        rows = session.exec(query.order_by(TrainingRequest.id.desc()).offset(offset).limit(limit)).all()
        number = _version_numbers(session, [r.model_version_id for r in rows])
        verdicts = _request_verdicts(session, [r.id for r in rows])
    return {"collection": coll.slug, "offset": offset, "limit": limit, "training_requests": [
        {"id": r.id, "state": r.state, "reason": r.reason, "attempts": r.attempts,
         "claimed_by": hidden(r.claimed_by, people),
         "lease_expires_at": iso(r.lease_expires_at), "created_at": iso(r.created_at),
         "published_at": iso(r.published_at), "model_version_id": r.model_version_id,
         "model_version": number.get(r.model_version_id), "decision": verdicts.get(r.id), "error": r.error,
         "trigger": without_operator(r.trigger, people), "params": r.params} for r in rows]}


def training_request_outcome(request_id: int) -> dict[str, Any]:
    """Where a recorded request is now: its state, and its result when it has one (the version
    trained, the gates' decision; the error of a failed one). What a replayed Idempotency-Key answers."""
    with session_scope() as session:
        r = session.get(TrainingRequest, request_id)
        number = _version_numbers(session, [r.model_version_id])
        verdict = _request_verdicts(session, [r.id]).get(r.id)
    return {"state": r.state, **({"model_version": number[r.model_version_id]} if r.model_version_id in number else {}),
            **({"decision": verdict} if verdict else {}), **({"error": r.error} if r.state == requests.FAILED else {})}


def _request_verdicts(session, request_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The gates' verdict on each decided request: its first recorded decision (promote, shadow or
    reject), the decision's id and its reason."""
    if not request_ids:
        return {}
    rows = session.exec(select(PromotionDecision).where(PromotionDecision.training_request_id.in_(request_ids))
                        .order_by(PromotionDecision.id)).all()
    out: dict[int, dict[str, Any]] = {}
    for d in rows:
        out.setdefault(d.training_request_id, {"id": d.id, "decision": d.decision, "reason": d.reason})
    return out


# --- market ---------------------------------------------------------------------------------

def _market_window(t0: datetime | None, t1: datetime | None, last_day: date | None) -> tuple[datetime, datetime]:
    """[from, to) of /market: default the 365 days up to the end of the last day of data."""
    default_to = None
    if t1 is None:
        t1, default_to = ((datetime.combine(last_day, datetime.min.time(), UTC) + timedelta(days=1),
                           "the end of the last day of data") if last_day is not None
                          else (datetime.now(UTC), "now: there is no data yet"))
    if t0 is None:
        t0 = t1 - timedelta(days=365)
    check_window(t0, t1, default_to)  # after the defaults: a `from` past the last market day is refused too
    return t0, t1


def _days_touched(t0: datetime, t1: datetime) -> tuple[date, date]:
    """Every day the window touches: [t0, t1) ends on the day before t1 only when t1 is a midnight."""
    return t0.date(), (t1 - timedelta(microseconds=1)).date()


def market(slug: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Daily floor, ETH/USD and the service's sales index (a daily-priced collection: cards
    priced, median price and the market index). Default window: the last 365 days of data."""
    from models.market_index import sales_index

    t0, t1 = parse_time(start, "from"), parse_time(end, "to")
    with session_scope() as session:
        coll = collection_row(session, slug)
        if coll.kind == DAILY_PRICES:
            return _daily_market(session, coll, t0, t1)
        last_day = session.exec(select(func.max(MarketDay.day)).where(MarketDay.collection_id == coll.id)).one()
        last_sale = session.exec(select(func.max(Sale.ts)).where(Sale.collection_id == coll.id)).one()
        candidates = [d for d in (last_day, last_sale.date() if last_sale else None) if d is not None]
        t0, t1 = _market_window(t0, t1, max(candidates) if candidates else None)
        window_first, window_last = _days_touched(t0, t1)
        days = session.exec(select(MarketDay.day, MarketDay.floor, MarketDay.eth_usd).where(
            MarketDay.collection_id == coll.id, MarketDay.day >= window_first, MarketDay.day <= window_last)
            .order_by(MarketDay.day)).all()
        sales = session.exec(select(Sale.ts, Sale.price).where(  # the sales index: clean sales, as the model's
            Sale.collection_id == coll.id, Sale.wash_reason.is_(None), Sale.ts >= t0 - timedelta(days=14),
            Sale.ts < t1)).all()
    calendar = pd.date_range(pd.Timestamp(window_first), pd.Timestamp(window_last), freq="D")
    levels = pd.Series(float("nan"), index=calendar)
    if sales and len(calendar):
        frame = pd.DataFrame(sales, columns=["ts", "price"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
        frame = frame.sort_values("ts", kind="stable")
        levels = sales_index(frame, calendar)
    by_day = {d[0]: d for d in days}
    points = []
    for day, level in zip(calendar, levels.to_numpy(), strict=True):
        row = by_day.get(day.date())
        if row is None and pd.isna(level):
            continue
        points.append({"day": day.date().isoformat(), "floor": rounded(row[1]) if row else None,
                       "eth_usd": rounded(row[2]) if row else None, "index": rounded(level)})
    return {"collection": coll.slug, "currency": coll.currency, "from": iso(t0), "to": iso(t1),
            "index_meaning": "25th percentile of sale prices over the 3 days before the day (7/14 when thin)",
            "days": points}


def _daily_market(session: Session, coll: Collection, t0: datetime | None, t1: datetime | None) -> dict[str, Any]:
    """The cards' market per priced day of the window (models.daily.market_days). The index is
    computed on the whole series, so a day's level is the same whatever window asks for it."""
    from fairvalue.kinds import kind_of
    from models.daily import MARKET_INDEX_MEANING, market_days

    series = kind_of(coll).load(session, coll)
    t0, t1 = _market_window(t0, t1, series.last_day.date() if series.last_day is not None else None)
    window_first, window_last = _days_touched(t0, t1)
    days = market_days(series)
    days = days[(days["day"].dt.date >= window_first) & (days["day"].dt.date <= window_last)]
    return {"collection": coll.slug, "currency": coll.currency, "kind": DAILY_PRICES, "from": iso(t0), "to": iso(t1),
            "index_meaning": MARKET_INDEX_MEANING,
            "days": [{"day": d.date().isoformat(), "n_cards": int(n), "median_price": rounded(m), "index": rounded(i)}
                     for d, n, m, i in zip(days["day"], days["n_cards"], days["median_price"], days["index"],
                                           strict=True)]}
