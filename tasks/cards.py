"""Card price collection (daily, ingest queue): fetch, keep what the paid API answered, store, then ask
for a nowcast of the collection when any price is new or changed. Without an API key it records a
skipped run.

Fetching and storing are separate steps: the answers are kept as an artifact (by collection and day)
before anything is stored, and a retry after a database error stores from them instead of asking the
paid API again. So does a run for a day whose answers are already kept: the same message delivered
again (its worker died, or it outlasted the broker's visibility timeout) or a second run that day;
it asks the API only for the cards those answers lack (failed, activated since, or answered without
a price, which is asked for again once a day).
A run slowed past FAIRVALUE_CARD_PRICE_TIME_LIMIT_SECONDS (the API's rate limit) is stopped, so it
ends before the visibility timeout (which covers it) would start it a second time; it keeps and stores
the answers it paid for before it is recorded failed, and the next run asks for the other cards."""

from __future__ import annotations

from datetime import UTC, datetime

from celery.exceptions import SoftTimeLimitExceeded

from fairvalue.card_prices import (
    CollectReport,
    FetchedPrices,
    answered_for_the_day,
    fetch_prices,
    kept_for_day,
    load_fetched,
    save_fetched,
    store_fetched,
    with_cards_asked_again,
)
from fairvalue.settings import get_settings
from storage.artifacts import ArtifactError, get_store
from storage.runs import SKIPPED, recorded_run
from tasks import names
from tasks.app import TRANSIENT_ERRORS, app, request_nowcast
from tasks.guards import skipped_unless_loaded

# Read once, as the worker imports its tasks: Celery takes a task's time limits from its decorator.
_limits = get_settings()


@app.task(name=names.CARD_PRICES, bind=True, soft_time_limit=_limits.card_price_time_limit_seconds,
          time_limit=_limits.hard_time_limit(_limits.card_price_time_limit_seconds))
def collect_card_prices(self, collection: str, fetched: dict[str, str] | None = None) -> dict:
    """`fetched`: the kept answers (save_fetched's uri and sha256) a retry stores from."""
    settings = get_settings().for_collection(collection)
    try:
        with recorded_run(names.CARD_PRICES, self.request.id, settings.collection) as run:
            if skipped_unless_loaded(run, settings):
                return dict(run)
            store = get_store(settings)
            if fetched is None:
                fetched, answers = _kept_today(store, settings.collection, run)
            else:
                answers = load_fetched(store, fetched)
            fetched_before = answers is not None
            if answers is not None:  # a retry too: an error while asking again must not end the asking
                fetched, answers = _ask_again_for_the_unanswered(store, settings, fetched, answers, run)
            else:
                answers = fetch_prices(settings, stop_on=STOPS)
                if answers.skipped:
                    run.update(CollectReport(settings.collection, skipped=answers.skipped).as_dict(), status=SKIPPED)
                    return dict(run)
                try:
                    fetched = save_fetched(store, answers)
                except ArtifactError as exc:  # stored from memory all the same; a retry would fetch again
                    run["answers_not_kept"] = str(exc)
            if fetched_before:
                run["stored_from_kept_answers"] = True
            run["answers"] = fetched
            report = store_fetched(settings, answers)
            run.update(report.as_dict())
            # A retry (or a run from kept answers) may find every price stored by the attempt that
            # failed or died after storing them (before asking for the nowcast): it asks all the same;
            # a nowcast already covering them skips itself.
            if report.prices.stored or fetched_before:
                request_nowcast(collection)
                run["nowcast_requested"] = True
            if answers.stopped:  # the run failed, but what it paid for is kept and stored
                raise StoppedEarly(f"{answers.stopped}: {answers.cards} cards asked by then, their answers kept "
                                   "and stored; the next run asks for the others")
            return dict(run)
    except TRANSIENT_ERRORS as exc:
        if fetched is None:
            raise  # nothing fetched (or kept) yet: autoretry_for sends the task again as it came
        raise self.retry_with(exc, fetched=fetched) from exc


class StoppedEarly(RuntimeError):
    """The time limit stopped the fetch: the run is recorded failed after storing what was answered."""


# What ends a fetch early, keeping its answers: the soft time limit, which leaves
# FAIRVALUE_TASK_KILL_GRACE_SECONDS to keep and store them before the hard one.
STOPS = (SoftTimeLimitExceeded,)


def _ask_again_for_the_unanswered(store, settings, kept: dict[str, str], answers: FetchedPrices,
                                  run: dict) -> tuple[dict[str, str] | None, FetchedPrices]:
    """The kept answers, completed by asking the API for the cards they have no usable answer for
    (it failed them, answered with no price and was not asked again yet, or they were activated
    since), kept again: a second run the same day pays only for those, and still tries them."""
    again = fetch_prices(settings, today=answers.day, answered=answered_for_the_day(answers), stop_on=STOPS)
    run["cards_asked_again"] = again.cards
    if not again.cards or again.skipped:
        return kept, answers
    answers = with_cards_asked_again(answers, again)
    try:
        return save_fetched(store, answers), answers
    except ArtifactError as exc:  # stored from memory all the same; a retry would ask for these again
        run["answers_not_kept"] = str(exc)
        return None, answers


def _kept_today(store, collection: str, run: dict) -> tuple[dict[str, str] | None, FetchedPrices | None]:
    """Today's kept answers (UTC, the day fetch_prices keys them by) and where they are, or
    (None, None): none kept, or a store that cannot be listed or read (noted; the run fetches,
    as one did before answers were looked up)."""
    try:
        kept = kept_for_day(store, collection, datetime.now(UTC).date())
        return (kept, load_fetched(store, kept)) if kept else (None, None)
    except ArtifactError as exc:
        run["kept_answers_unread"] = str(exc)
        return None, None
