"""Explain a published valuation: the drivers and comparable sales behind one item's fair value,
computed with the model and the moment of the published snapshot, so the explanation matches the
number the API serves. Each answer checks that it does (`matches_published`): on PostgreSQL it reads
the sales exactly as the snapshot's nowcast read them (its `data_snapshot`); on SQLite those stored
by its `data_read_at`, which a few races can still change (docs/architecture.md).

Explaining needs the champion and the market in memory (seconds to load), so the pair is cached
per published snapshot: the first explanation after a nowcast pays the load, the next are fast.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlmodel import select

from fairvalue.answers import iso, iso_text
from fairvalue.item_reads import why_not_valued
from fairvalue.settings import Settings, get_settings
from models.estimator import FairValueModel
from models.explain import explain
from models.features import MarketData
from models.nowcast import valuation_moment
from models.times import naive_utc_moment
from storage.artifacts import get_store
from storage.db import session_scope
from storage.registry import load_model
from storage.snapshots import SignalRules, published_snapshot
from storage.tables import Collection, Item, ModelVersion, NowcastRow

# The snapshot stores 6 significant digits (storage/snapshots.format_floats): a recomputed value
# within a unit of the 6th (relative 1e-5 at most) is the published one.
PUBLISHED_DIGITS_TOLERANCE = 1e-5
# How many drivers and comparable sales per basis an explanation may be asked for (API and CLI).
TOP_RANGE, COMPS_RANGE = (1, 30), (0, 45)


class NotExplainable(LookupError):
    """Base: there is nothing to explain."""


class UnknownItem(NotExplainable):
    """No such collection or item, or none the published snapshot values (the item read's 404)."""


class NothingPublished(NotExplainable):
    """The collection has no published snapshot yet."""


@lru_cache(maxsize=2)
def _model_and_market(collection_id: int, snapshot_id: int, model_version_id: int,
                      data_read_at, data_snapshot: str | None = None) -> tuple[FairValueModel, MarketData]:
    """The snapshot's model and the market it was computed on, so a sale stored since, even one
    dated before the valuation moment, does not move the explanation away from the published
    value. On PostgreSQL the sales exactly as its nowcast's read saw them (data_snapshot: a flag
    set since is not read either); elsewhere, or for a snapshot from before migration 0010, the
    sales stored by the moment of that read (data_read_at), which a batch stamped before it but
    committed after, or a sale flagged as a wash trade since, can still change."""
    from fairvalue.kinds import kind_of

    with session_scope() as session:
        version = session.get(ModelVersion, model_version_id)
    # The model first, on the short budget: an HTTP request must not hang on a hung store for
    # minutes, nor read a whole market before finding it cannot be answered (a model this process
    # verified before is not read again: storage.registry.load_model).
    model = load_model(get_store(short_budget=True), version)
    with session_scope() as session:
        coll = session.get(Collection, collection_id)
        data = kind_of(coll).load(session, coll, stored_by=None if data_snapshot else data_read_at,
                                  read_under=data_snapshot)
    return model, data


def explain_item(item_key: str, collection_slug: str | None = None, top: int = 5, n_comps: int = 10,
                 settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    slug = collection_slug or settings.collection
    with session_scope() as session:
        collection = session.exec(select(Collection).where(Collection.slug == slug)).first()
        if collection is None:
            raise UnknownItem(f"unknown collection {slug[:64]!r}")
        if session.get(Item, (collection.id, item_key)) is None:
            raise UnknownItem(f"no item {item_key!r} in {collection.slug}")
        snapshot = published_snapshot(session, collection)
        if snapshot is None:
            raise NothingPublished("nothing published yet; run a nowcast")
        version = session.get(ModelVersion, snapshot.model_version_id)
        row = session.get(NowcastRow, (snapshot.id, item_key))
        if row is None or row.fair_value is None:  # nothing published to explain: the item read's 404, and why
            raise UnknownItem(why_not_valued(collection.slug, item_key, snapshot.id))
        published_value = row.fair_value
        snapshot_id, version_id, version_number = snapshot.id, version.id, version.version
        data_read_at = snapshot.data_read_at  # None before migration 0009: every sale stored
        data_snapshot = snapshot.data_snapshot  # None before migration 0010 and on SQLite
        as_of, valued_at = naive_utc_moment(snapshot.as_of), naive_utc_moment(snapshot.valued_at)
        collection_id, currency = collection.id, collection.currency
        rules = SignalRules.recorded(snapshot, settings)
    model, data = _model_and_market(collection_id, snapshot_id, version_id, data_read_at, data_snapshot)
    if hasattr(model, "value_days"):  # a daily-priced collection (trading cards): models/daily.py
        # At the moment the snapshot valued (as_of, or a little after the last prices), with the
        # signal's rule at the snapshot's thresholds, so the deviation is the item's. Cards snapshots
        # always stored valued_at.
        try:
            out = model.explain(data, item_key, valued_at if valued_at is not None else as_of, *rules)
        except LookupError as exc:
            raise UnknownItem(str(exc)) from None
    else:  # the moment the snapshot valued it at (as_of, or the last market known before it)
        # Snapshots from before migration 0007 did not store it: found again from the data.
        moment = valued_at if valued_at is not None else valuation_moment(data, as_of, settings.market_stale_after_days)
        out = explain(model, data, item_key, moment, top=top, n_comps=n_comps)
        out["as_of"] = iso(moment.to_pydatetime())  # UTC, written as every other answer writes times
        for sale in out["comparable_sales"]:  # the model's frames' naive UTC, as as_of
            sale["timestamp"] = iso_text(sale["timestamp"])
    out.update(collection=slug, snapshot_id=snapshot_id, model_version=version_number, currency=currency)
    if "fair_value" in out:
        out["published_fair_value"] = published_value
        out["matches_published"] = bool(abs(out["fair_value"] - published_value)
                                        <= PUBLISHED_DIGITS_TOLERANCE * abs(published_value))
    return out
