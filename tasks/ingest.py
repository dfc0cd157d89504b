"""Ingest follow-ups: after new sales are stored, ask for an out-of-cycle nowcast if enough
changed since the published snapshot; after new listings, ask for one in any case."""

from __future__ import annotations

from fairvalue import pipeline
from fairvalue.settings import get_settings
from storage.runs import recorded_run
from tasks import names
from tasks.app import app, request_nowcast


@app.task(name=names.AFTER_SALES, bind=True)
def after_sales(self, accepted: int, collection: str | None = None) -> dict:
    """`collection` is the one the sales went into (the sender's; a message without it, sent
    before it was named, means this worker's default)."""
    settings = get_settings().for_collection(collection)
    with recorded_run(names.AFTER_SALES, self.request.id, settings.collection) as run:
        pending = pipeline.sales_since_published(settings)
        threshold = settings.nowcast_trigger_sales
        run.update(accepted=accepted, pending=pending, threshold=threshold)
        if accepted > 0 and pending >= threshold:
            request_nowcast(settings.collection)
            run["nowcast_requested"] = True
        return dict(run)


@app.task(name=names.AFTER_LISTINGS, bind=True)
def after_listings(self, accepted: int, collection: str | None = None) -> dict:
    """A listing changes the signal of its item at once (an ask under the value is a BUY while it
    stands), so any accepted listing asks for a nowcast: at once, or when
    FAIRVALUE_LISTING_NOWCAST_MIN_SECONDS have passed since the published snapshot's read. A
    nowcast that reads after the request serves it, and the request is then skipped
    (tasks.app.request_nowcast)."""
    settings = get_settings().for_collection(collection)
    with recorded_run(names.AFTER_LISTINGS, self.request.id, settings.collection) as run:
        run.update(accepted=accepted)
        if accepted > 0:
            since = pipeline.seconds_since_published_read(settings)
            wait = 0.0 if since is None else max(0.0, settings.listing_nowcast_min_seconds - since)
            request_nowcast(settings.collection, countdown=wait or None)
            run.update(nowcast_requested=True, countdown=round(wait, 1))
        return dict(run)
