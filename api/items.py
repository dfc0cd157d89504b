"""Valuations: one item, or many at once, from the published snapshot."""

from __future__ import annotations

import json
import logging
import re

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.deps import collection_or_404, iso, rounded
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.published_cache import CachedSnapshot, PublishedCache
from storage.snapshots import PublishedValue, read_published
from storage.tables import Item, ModelVersion

ITEM_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_BULK_IDS = 1000
log = logging.getLogger("fairvalue.api")
_CACHES: dict[str, PublishedCache] = {}  # collection slug -> the published snapshot held here


def _check_key(key: str) -> str:
    if not ITEM_KEY.match(key):
        raise HTTPException(400, f"malformed item id {key[:80]!r}: use letters, digits, _ . : - (max 64)")
    return key


def _version_numbers(session, values: list[PublishedValue]) -> dict[int, int]:
    ids = {v.model_version_id for v in values}
    if not ids:
        return {}
    rows = session.exec(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(ids))).all()
    return dict(rows)


def _valuation(v: PublishedValue, version: int | None, currency: str) -> dict:
    return {
        "item_id": v.item_key,
        "fair_value": rounded(v.fair_value),
        "currency": currency,
        "band": {"p10": rounded(v.p10), "p90": rounded(v.p90)},
        "signal": v.signal,
        "last_sale": None if v.last_price is None else {"price": rounded(v.last_price),
                                                        "timestamp": iso(v.last_sale_at)},
        "snapshot": {"id": v.snapshot_id, "as_of": iso(v.as_of), "published_at": iso(v.published_at)},
        "model_version": version,
    }


def _item_from_database(key: str) -> dict:
    with session_scope() as session:
        coll = collection_or_404(session)
        item = session.get(Item, (coll.id, key))
        if item is None:
            raise HTTPException(404, f"no item {key!r} in {coll.slug}")
        values = read_published(session, coll, [key])
        if not values:
            raise HTTPException(503, "no published snapshot values this item yet; run a nowcast")
        versions = _version_numbers(session, values)
        body = _valuation(values[0], versions.get(values[0].model_version_id), coll.currency)
        body.update(collection=coll.slug, type=item.item_type, attributes=item.attributes)
    return body


def _refresh_cache(cache: PublishedCache) -> CachedSnapshot | None:
    try:
        with session_scope() as session:
            return cache.refresh(session, collection_or_404(session))
    except Exception as exc:  # the database is away: keep serving the last whole snapshot
        log.warning("published snapshot not refreshed: %s", exc)
        return cache.snapshot


async def _cached_snapshot() -> CachedSnapshot | None:
    """The published snapshot held in this process (storage/published_cache.py)."""
    settings = get_settings()
    cache = _CACHES.get(settings.collection)
    if cache is None:
        cache = _CACHES.setdefault(settings.collection, PublishedCache(settings.api_snapshot_refresh_seconds))
    if cache.is_fresh():
        return cache.snapshot
    return await run_in_threadpool(_refresh_cache, cache)


async def get_item(request: Request) -> JSONResponse:
    key = _check_key(request.path_params["item_id"])
    snap = await _cached_snapshot()
    if snap is not None and key in snap.values:
        rendered = snap.rendered.get(("item", key))
        if rendered is None:
            value = snap.values[key]
            kind, attributes = snap.items.get(key, ("", {}))
            body = _valuation(value, snap.versions.get(value.model_version_id), snap.currency)
            body.update(collection=snap.slug, type=kind, attributes=attributes)
            rendered = snap.rendered[("item", key)] = _json(body)
        return Response(rendered, media_type="application/json")
    return JSONResponse(await run_in_threadpool(_item_from_database, key))


def _json(value) -> bytes:
    """As JSONResponse renders."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _bulk_from_cache(snap: CachedSnapshot, keys: list[str]) -> Response:
    """The bulk answer from pre-rendered valuations: joining bytes instead of building and
    encoding 100 dicts per request."""
    parts, not_found = [], []
    for key in keys:
        value = snap.values.get(key)
        if value is None:
            not_found.append(key)
            continue
        rendered = snap.rendered.get(("valuation", key))
        if rendered is None:
            rendered = snap.rendered[("valuation", key)] = _json(
                _valuation(value, snap.versions.get(value.model_version_id), snap.currency))
        parts.append(rendered)
    first = snap.values[next(k for k in keys if k in snap.values)]
    head = _json({"collection": snap.slug, "snapshot": {"id": first.snapshot_id, "as_of": iso(first.as_of),
                                                         "published_at": iso(first.published_at)}})
    body = head[:-1] + b',"valuations":[' + b",".join(parts) + b'],"not_found":' + _json(not_found) + b"}"
    return Response(body, media_type="application/json")


def _bulk_ids(request: Request) -> list[str]:
    raw = request.query_params.get("ids")
    if not raw:
        raise HTTPException(400, "query parameter ids is required, e.g. ?ids=1,2,3")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise HTTPException(400, "ids holds no item id")
    if len(keys) > MAX_BULK_IDS:
        raise HTTPException(400, f"at most {MAX_BULK_IDS} ids per request, got {len(keys)}")
    return list(dict.fromkeys(_check_key(k) for k in keys))


def _bulk_from_database(keys: list[str]) -> tuple[str, str, list[PublishedValue], dict[int, int]]:
    with session_scope() as session:
        coll = collection_or_404(session)
        values = read_published(session, coll, keys)
        versions = _version_numbers(session, values)
        if not values:
            known = set(session.exec(select(Item.item_key).where(Item.collection_id == coll.id,
                                                                 Item.item_key.in_(keys))).all())
            if known:
                raise HTTPException(503, "no published snapshot yet; run a nowcast")
    return coll.slug, coll.currency, values, versions


async def bulk_valuations(request: Request) -> JSONResponse:
    keys = _bulk_ids(request)
    snap = await _cached_snapshot()
    if snap is not None and any(k in snap.values for k in keys):
        return _bulk_from_cache(snap, keys)
    slug, currency, values, versions = await run_in_threadpool(_bulk_from_database, keys)
    by_key = {v.item_key: v for v in values}
    snapshot = None
    if values:
        v0 = values[0]
        snapshot = {"id": v0.snapshot_id, "as_of": iso(v0.as_of), "published_at": iso(v0.published_at)}
    return JSONResponse(
        {
            "collection": slug,
            "snapshot": snapshot,
            "valuations": [
                _valuation(by_key[k], versions.get(by_key[k].model_version_id), currency)
                for k in keys if k in by_key
            ],
            "not_found": [k for k in keys if k not in by_key],
        }
    )
