"""What `fairvalue status` shows of a collection, as one plain function returning a typed answer:
what is stored, what was refused, which sales the model leaves out, who is champion, what is
published and which loops are paused. The counts are storage's (storage/counts.py, listings.py,
wash.py, snapshots.py), the same functions the API's summary calls; the CLI only renders this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fairvalue import kinds
from fairvalue.queue_reads import paused_loops
from fairvalue.reads import collection_row
from storage.counts import item_count, prices_span, rejected_by_reason, sales_span
from storage.db import session_scope
from storage.listings import listing_counts
from storage.registry import CHAMPION, get_alias
from storage.snapshots import published_snapshot, snapshot_counts
from storage.wash import kept_out_by_reason


@dataclass(frozen=True)
class Champion:
    version: int
    sha256: str


@dataclass(frozen=True)
class Published:
    snapshot_id: int
    as_of: datetime
    valued_at: datetime | None

    @property
    def market_silent(self) -> bool:
        """The items were valued before the moment asked for: the market had gone silent."""
        return self.valued_at is not None and self.valued_at != self.as_of


@dataclass(frozen=True)
class CollectionStatus:
    slug: str
    daily: bool  # a daily-priced collection (cards): its rows are prices per item and day, not sales
    items: int
    rows: int  # sales, or daily prices when `daily`
    listings: int
    snapshots: int
    snapshot_rows: int
    thinned: int  # snapshots retention left only the rows their readers need
    rejected: dict[str, int]  # refused sales or prices kept, by reason
    rejected_listings: dict[str, int]
    kept_out: dict[str, int]  # sales flagged as suspected wash trades, by reason
    paused: list[str]  # every collection's paused loops, one readable line each
    champion: Champion | None
    published: Published | None


def collection_status(slug: str) -> CollectionStatus:
    """The status of the stored collection `slug`; NotFound when there is none (looked up, never
    created: a mistyped slug leaves nothing behind)."""
    with session_scope() as session:
        coll = collection_row(session, slug)
        daily = kinds.is_daily(coll)
        rows = (prices_span if daily else sales_span)(session, coll)[0]
        listings, rejected_listings = listing_counts(session, coll)
        snapshots, thinned, snapshot_rows = snapshot_counts(session, coll)
        champion = get_alias(session, coll, CHAMPION)
        snap = published_snapshot(session, coll)
        return CollectionStatus(
            slug=coll.slug, daily=daily, items=item_count(session, coll), rows=rows, listings=listings,
            snapshots=snapshots, snapshot_rows=snapshot_rows, thinned=thinned,
            rejected=rejected_by_reason(session, coll), rejected_listings=rejected_listings,
            kept_out=kept_out_by_reason(session, coll), paused=[p["text"] for p in paused_loops(session)],
            champion=None if champion is None else Champion(champion.version, champion.sha256),
            published=None if snap is None else Published(snap.id, snap.as_of, snap.valued_at))
