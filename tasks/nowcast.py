"""Nowcast task: value every item with the champion and publish the snapshot."""

from __future__ import annotations

from datetime import datetime

from fairvalue import pipeline
from fairvalue.lifecycle import is_paused
from storage.runs import recorded_run
from tasks.app import app


@app.task(name="fairvalue.nowcast", bind=True)
def nowcast(self, as_of: str | None = None) -> dict:
    with recorded_run("fairvalue.nowcast", self.request.id) as run:
        if is_paused("nowcast"):
            run.update(status="skipped", reason="paused")
            return dict(run)
        result = pipeline.nowcast(as_of=datetime.fromisoformat(as_of) if as_of else None)
        run.update(result.__dict__)
        return result.__dict__
