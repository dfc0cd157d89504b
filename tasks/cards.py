"""Card price collection (daily, ingest queue): fetch, keep what the paid API answered, store, then ask
for a nowcast of the collection when any price is new or changed. Without an API key it records a
skipped run.

Fetching and storing are separate steps: the answers are kept as an artifact (by collection and day)
before anything is stored, and a retry after a database error stores from them instead of asking the
paid API again."""

from __future__ import annotations

from fairvalue.card_prices import CollectReport, fetch_prices, load_fetched, save_fetched, store_fetched
from fairvalue.settings import get_settings
from storage.artifacts import ArtifactError, get_store
from storage.runs import SKIPPED, recorded_run
from tasks import names
from tasks.app import TRANSIENT_ERRORS, app, request_nowcast
from tasks.guards import skipped_unless_loaded


@app.task(name=names.CARD_PRICES, bind=True)
def collect_card_prices(self, collection: str, fetched: dict[str, str] | None = None) -> dict:
    """`fetched`: the kept answers (save_fetched's uri and sha256) a retry stores from."""
    settings = get_settings().for_collection(collection)
    fetched_before = fetched is not None
    try:
        with recorded_run(names.CARD_PRICES, self.request.id, settings.collection) as run:
            if skipped_unless_loaded(run, settings):
                return dict(run)
            store = get_store(settings)
            if fetched is None:
                answers = fetch_prices(settings)
                if answers.skipped:
                    run.update(CollectReport(settings.collection, skipped=answers.skipped).as_dict(), status=SKIPPED)
                    return dict(run)
                try:
                    fetched = save_fetched(store, answers)
                except ArtifactError as exc:  # stored from memory all the same; a retry would fetch again
                    run["answers_not_kept"] = str(exc)
            else:
                answers = load_fetched(store, fetched)
                run["stored_from_kept_answers"] = True
            run["answers"] = fetched
            report = store_fetched(settings, answers)
            run.update(report.as_dict())
            # A retry may find every price stored by the attempt that failed after storing them (in
            # asking for the nowcast): it asks all the same; a nowcast already covering them skips itself.
            if report.prices.stored or fetched_before:
                request_nowcast(collection)
                run["nowcast_requested"] = True
            return dict(run)
    except TRANSIENT_ERRORS as exc:
        if fetched is None:
            raise  # nothing fetched (or kept) yet: autoretry_for sends the task again as it came
        raise self.retry_with(exc, fetched=fetched) from exc
