"""Nowcast task: value every item with the champion and publish the snapshot."""

from __future__ import annotations

from datetime import datetime

from fairvalue import pipeline
from fairvalue.lifecycle import is_paused
from fairvalue.settings import get_settings
from storage.runs import recorded_run
from tasks.app import app


@app.task(name="fairvalue.nowcast", bind=True)
def nowcast(self, as_of: str | None = None, collection: str | None = None) -> dict:
    with recorded_run("fairvalue.nowcast", self.request.id) as run:
        settings = get_settings().for_collection(collection)
        run["collection"] = settings.collection
        if is_paused("nowcast"):
            run.update(status="skipped", reason="paused")
            return dict(run)
        if collection and not pipeline.is_loaded(settings):
            run.update(status="skipped", reason=f"collection {collection} is not loaded")
            return dict(run)
        result = pipeline.nowcast(settings, as_of=datetime.fromisoformat(as_of) if as_of else None)
        run.update(result.__dict__)
        return result.__dict__
