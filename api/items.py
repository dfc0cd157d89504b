"""Valuations: one item, or many at once, from the published snapshot."""

from __future__ import annotations

import re

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.deps import collection_or_404, iso, rounded
from fairvalue import explanations
from storage.db import session_scope
from storage.snapshots import PublishedValue, read_published
from storage.tables import Item, ModelVersion

ITEM_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_BULK_IDS = 1000


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


def get_item(request: Request) -> JSONResponse:
    key = _check_key(request.path_params["item_id"])
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
    return JSONResponse(body)


def bulk_valuations(request: Request) -> JSONResponse:
    raw = request.query_params.get("ids")
    if not raw:
        raise HTTPException(400, "query parameter ids is required, e.g. ?ids=1,2,3")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise HTTPException(400, "ids holds no item id")
    if len(keys) > MAX_BULK_IDS:
        raise HTTPException(400, f"at most {MAX_BULK_IDS} ids per request, got {len(keys)}")
    keys = list(dict.fromkeys(_check_key(k) for k in keys))
    with session_scope() as session:
        coll = collection_or_404(session)
        values = read_published(session, coll, keys)
        versions = _version_numbers(session, values)
        if not values:
            known = set(session.exec(select(Item.item_key).where(Item.collection_id == coll.id,
                                                                 Item.item_key.in_(keys))).all())
            if known:
                raise HTTPException(503, "no published snapshot yet; run a nowcast")
    by_key = {v.item_key: v for v in values}
    snapshot = None
    if values:
        v0 = values[0]
        snapshot = {"id": v0.snapshot_id, "as_of": iso(v0.as_of), "published_at": iso(v0.published_at)}
    return JSONResponse(
        {
            "collection": coll.slug,
            "snapshot": snapshot,
            "valuations": [
                _valuation(by_key[k], versions.get(by_key[k].model_version_id), coll.currency)
                for k in keys if k in by_key
            ],
            "not_found": [k for k in keys if k not in by_key],
        }
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}, got {value}")
    return value


async def explain_item(request: Request) -> JSONResponse:
    """Drivers and comparable sales of the published value. Runs the model, so off the event loop."""
    key = _check_key(request.path_params["item_id"])
    top = _int_param(request, "top", 5, 1, 30)
    comps = _int_param(request, "comps", 10, 0, 45)
    try:
        body = await run_in_threadpool(explanations.explain_item, key, None, top, comps)
    except explanations.NotExplainable as exc:
        status = 404 if isinstance(exc, explanations.UnknownItem) else 503
        raise HTTPException(status, str(exc)) from None
    for field in ("fair_value", "floor", "typical_value"):
        body[field] = rounded(body[field])
    return JSONResponse(body)
