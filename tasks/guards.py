"""What every per-collection task checks before it works on a collection."""

from __future__ import annotations

from fairvalue import pipeline
from fairvalue.settings import Settings
from storage.runs import SKIPPED


def skipped_unless_loaded(run: dict, settings: Settings) -> bool:
    """True, with the run recorded as skipped, when the collection has no items yet: a deployment
    without the cards, or the default collection before its first seed. Such a run must not
    create the collection, queue a training that cannot succeed, or fail every half hour."""
    if pipeline.is_loaded(settings):
        return False
    run.update(status=SKIPPED, reason=f"collection {settings.collection} is not loaded")
    return True
