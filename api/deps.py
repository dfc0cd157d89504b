"""What handlers share: settings, the collection row, JSON-friendly formatting."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select
from starlette.exceptions import HTTPException

from fairvalue.settings import get_settings
from storage.tables import Collection


def collection_or_404(session: Session, slug: str | None = None) -> Collection:
    slug = slug or get_settings().collection
    found = session.exec(select(Collection).where(Collection.slug == slug)).first()
    if found is None:
        raise HTTPException(404, f"unknown collection {slug!r}")
    return found


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
