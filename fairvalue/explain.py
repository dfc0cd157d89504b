"""Why an item is worth what the published snapshot says: drivers and comparable sales.

The nowcast stores only the value, band and signal, so the explanation rebuilds the item's
features at the snapshot's moment (from data strictly before it, as the nowcast did) with the
snapshot's model, and measures each feature group's effect by swapping that group for the
values of a fixed sample of other items at the same moment: effect = value - mean(value with
the group taken from a reference item). That is the interventional, one-group-at-a-time view
(effects need not add up to the whole). The comparable sales are the ones the comparable
features were computed from: the last sales of items sharing the item's rarest trait, and of
its type.

The market data and the model are cached per process, keyed by the data they came from.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import select

from fairvalue.errors import NotFound, NotReady
from fairvalue.reads import check_item_key, collection_row, iso, rounded
from fairvalue.settings import get_settings
from models.features import MarketData, build_features
from storage.db import session_scope
from storage.market import load_market_data
from storage.snapshots import published_snapshot
from storage.tables import Item, MarketDay, ModelVersion, NowcastRow, Sale

REFERENCE_ITEMS = 200
GROUPS = {
    "own_sales": ("last_sale_",),
    "trait_comparables": ("comps_trait_",),
    "type_comparables": ("comps_type_",),
    "traits": ("trait:", "rarest_trait_", "trait_log_frequency_sum", "accessory_count"),
    "type": ("type:", "type_log_frequency"),
    "market": ("market_premium", "sales_count_", "log_floor_change", "floor_volatility", "log_eth_usd",
               "log_index_over_floor"),
}
DESCRIPTIONS = {
    "own_sales": "the item's own last sale (premium over the floor and its age)",
    "trait_comparables": "recent sales of items sharing its rarest trait",
    "type_comparables": "recent sales of items of its type",
    "traits": "its traits and their rarity",
    "type": "its type and that type's rarity",
    "market": "the market's state: recent premiums over the floor, activity, floor and ETH momentum",
}
_lock = threading.Lock()
_market: dict[int, tuple[tuple, MarketData]] = {}
_models: dict[int, Any] = {}


def _market_data(session, coll) -> MarketData:
    version = (session.exec(select(func.count(), func.max(Sale.id)).where(Sale.collection_id == coll.id)).one(),
               session.exec(select(func.count(), func.max(MarketDay.day))
                            .where(MarketDay.collection_id == coll.id)).one())
    with _lock:
        cached = _market.get(coll.id)
        if cached and cached[0] == version:
            return cached[1]
    data = load_market_data(session, coll)
    data.context()
    with _lock:
        _market[coll.id] = (version, data)
    return data


def _model(version: ModelVersion):
    from storage.artifacts import get_store
    from storage.registry import load_model

    with _lock:
        if version.id in _models:
            return _models[version.id]
    model = load_model(get_store(get_settings()), version)  # verifies the sha256 before unpickling
    with _lock:
        _models.clear()  # one model per process is plenty for explanations
        _models[version.id] = model
    return model


def _columns(model_columns: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [c for c in model_columns if c.startswith(prefixes)]


def _comparables(context: pd.DataFrame, members: set[str], before: pd.Timestamp, max_age_days: int,
                 k: int, items: pd.DataFrame) -> list[dict[str, Any]]:
    """The last k sales of `members` before `before`; `used_by_model` marks the ones inside the
    comparable feature's age limit (older ones are shown for context only)."""
    window = context[(context["ts"] < before) & context["item_key"].isin(members)].tail(k)
    oldest = before - pd.Timedelta(days=max_age_days)
    return [{"item_id": key, "type": items["item_type"].get(key), "timestamp": iso(ts.to_pydatetime()),
             "price": rounded(price), "premium_over_floor": rounded(np.exp(lp) - 1),
             "premium_over_market": rounded(np.exp(ex) - 1), "used_by_model": bool(ts >= oldest)}
            for key, ts, price, lp, ex in zip(window["item_key"], window["ts"], window["price"],
                                              window["log_premium"], window["excess_premium"], strict=True)][::-1]


def explain_item(slug: str | None, key: str) -> dict[str, Any]:
    check_item_key(key)
    with session_scope() as session:
        coll = collection_row(session, slug)
        if session.get(Item, (coll.id, key)) is None:
            raise NotFound(f"no item {key!r} in {coll.slug}")
        snap = published_snapshot(session, coll)
        if snap is None:
            raise NotReady("no published snapshot yet; run a nowcast")
        row = session.get(NowcastRow, (snap.id, key))
        version = session.get(ModelVersion, snap.model_version_id)
        data = _market_data(session, coll)
    if row is None:
        raise NotReady("the published snapshot does not value this item")
    model = _model(version)
    as_of = pd.Timestamp(snap.as_of).tz_convert("UTC").tz_localize(None)
    rng = np.random.default_rng(0)
    others = data.items.index[data.items.index != key]
    sample = rng.choice(np.asarray(others), size=min(REFERENCE_ITEMS, len(others)), replace=False)
    queries = pd.DataFrame({"item_key": [key, *sample], "ts": as_of})
    feats = build_features(data, model.vocab, queries)
    base = model.predict_features(feats.iloc[:1])
    value = float(base["fair_value"].iloc[0])
    drivers = []
    for group, prefixes in GROUPS.items():
        cols = _columns(model.columns, prefixes)
        if not cols:
            continue
        swapped = pd.concat([feats.iloc[:1]] * (len(feats) - 1), ignore_index=True)
        swapped[cols] = feats.iloc[1:][cols].to_numpy()
        alt = model.predict_features(swapped)["fair_value"].to_numpy(dtype=float)
        effect = value - float(np.nanmean(alt))
        drivers.append({"group": group, "meaning": DESCRIPTIONS[group], "effect": rounded(effect),
                        "effect_share": rounded(effect / value) if value else None,
                        "features": {c: rounded(feats.iloc[0][c]) for c in cols if not c.startswith(("trait:", "type:"))
                                     or feats.iloc[0][c] == 1}})
    drivers.sort(key=lambda d: -abs(d["effect"] or 0))

    rarest = model.vocab.rarest_trait(data.items.loc[[key]]).iloc[0]
    all_rarest = model.vocab.rarest_trait(data.items)
    item_type = data.items.at[key, "item_type"]
    context = data.context()
    first = feats.iloc[0]
    return {
        "collection": coll.slug, "item_id": key, "currency": coll.currency,
        "snapshot": {"id": snap.id, "as_of": iso(snap.as_of), "published_at": iso(snap.published_at),
                     "model_version": version.version},
        "fair_value": rounded(row.fair_value), "band": {"p10": rounded(row.p10), "p90": rounded(row.p90)},
        "recomputed_fair_value": rounded(value),
        "basis": {"floor": rounded(first["floor"]),
                  "premium_over_floor": rounded(value / first["floor"] - 1) if first["floor"] else None,
                  "how": "fair value = floor known before the snapshot x exp(predicted log premium)"},
        "method": f"effect = value - mean value with the group taken from {len(sample)} other items "
                  "at the same moment (one group at a time)",
        "drivers": drivers,
        "rarest_trait": {"name": rarest or None,
                         "frequency": rounded(model.vocab.frequency.get(rarest)) if rarest else None},
        "comparable_sales": {
            "same_rarest_trait": _comparables(context, set(all_rarest.index[all_rarest == rarest]) if rarest else set(),
                                              as_of, 180, 15, data.items),
            "same_type": _comparables(context, set(data.items.index[data.items["item_type"] == item_type]),
                                      as_of, 365, 10, data.items),
        },
    }
