"""Card price collection (daily, ingest queue): fetch, store, then ask for a nowcast of the collection when
any price is new or changed. Without an API key it records a skipped run."""

from __future__ import annotations

from fairvalue.card_prices import collect
from fairvalue.settings import get_settings
from storage.runs import recorded_run
from tasks import names
from tasks.app import app, request_nowcast
from tasks.guards import skipped_unless_loaded


@app.task(name=names.CARD_PRICES, bind=True)
def collect_card_prices(self, collection: str) -> dict:
    settings = get_settings().for_collection(collection)
    with recorded_run(names.CARD_PRICES, self.request.id, settings.collection) as run:
        if skipped_unless_loaded(run, settings):
            return dict(run)
        report = collect(settings)
        run.update(report.as_dict())
        if report.skipped:
            run["status"] = "skipped"
        elif report.prices.stored:
            request_nowcast(collection)
            run["nowcast_requested"] = True
        return dict(run)
