"""Every table of the service, in one place.

Times are timezone-aware UTC everywhere: SQLModel's datetime type refuses naive values and
hands back UTC on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, FetchedValue, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.times import SECOND


def utcnow() -> datetime:
    return datetime.now(UTC)


class Collection(SQLModel, table=True):
    __tablename__ = "collections"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True, max_length=64)
    name: str
    kind: str = Field(description="unique_items (punks) or daily_prices (cards)")
    currency: str = "ETH"
    created_at: datetime = Field(default_factory=utcnow)
    # The first day the market could trade, when known: a sale or price dated before it is refused
    # as before_collection. The punks' is set when the collection is made (storage.ingest
    # FIRST_SALE_DAYS), the cards' by `fairvalue cards load` from the universe's `first_day:`.
    first_day: date | None = None


class Item(SQLModel, table=True):
    __tablename__ = "items"

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    item_key: str = Field(primary_key=True, max_length=64)
    item_type: str = Field(default="", index=True)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Sale(SQLModel, table=True):
    __tablename__ = "sales"
    __table_args__ = (
        UniqueConstraint("collection_id", "event_id", name="uq_sales_event"),
        Index("ix_sales_collection_ts", "collection_id", "ts"),
        Index("ix_sales_item_ts", "collection_id", "item_key", "ts"),
        # The wash-trade check of a small batch reads the trades between its parties (storage/wash.py).
        Index("ix_sales_parties", "collection_id", "seller", "buyer"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    event_id: str = Field(max_length=200)
    item_key: str = Field(max_length=64)
    ts: datetime
    price: float
    seller: str = ""
    buyer: str = ""
    source: str = ""
    time_precision: str = Field(
        default=SECOND, max_length=8, sa_column_kwargs={"server_default": SECOND},
        description="how precisely ts is known (models.times.TIME_PRECISIONS): a sale of hour precision is "
                    "valued, for training, at the start of its hour")
    content_hash: str = Field(max_length=64, description="sha256 of the normalised row")
    ingested_at: datetime = Field(default_factory=utcnow, index=True)
    wash_reason: str | None = Field(
        default=None, max_length=32,
        description="why this sale looks like a wash trade (models/wash.py); such a sale never trains or scores")
    # On PostgreSQL: the transactions (xid8 as bigint) that stored the sale and first flagged it,
    # so a snapshot's explanation reads exactly the sales its nowcast read (storage/market.py).
    # The database fills stored_xact (migration 0010); null before it, and always on SQLite.
    stored_xact: int | None = Field(default=None, sa_type=BigInteger, index=True,
                                    sa_column_kwargs={"server_default": FetchedValue()})
    wash_flagged_xact: int | None = Field(default=None, sa_type=BigInteger)


class RejectedRow(SQLModel):
    """The columns of a refused row: kept whole with the reason, so nothing sent to us is lost."""

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    event_id: str | None = Field(default=None, max_length=200)
    reason: str = Field(index=True, max_length=64)
    detail: str = ""
    # sa_type, not a Column object: each table of a RejectedRow needs its own column.
    row: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    row_hash: str = Field(max_length=64)
    origin: str = Field(default="", description="seed, file name or webhook")
    rejected_at: datetime = Field(default_factory=utcnow)


class RejectedSale(RejectedRow, table=True):
    """A sale row we refused."""

    __tablename__ = "rejected_sales"
    __table_args__ = (UniqueConstraint("collection_id", "row_hash", name="uq_rejected_row"),)


class Listing(SQLModel, table=True):
    """A listing event: an item offered at `price` from `ts` on (until `expires_at`, a sale of
    it, or a later event), or, with `price` null, its offer withdrawn (models/listings.py)."""

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("collection_id", "event_id", name="uq_listings_event"),
        Index("ix_listings_item_ts", "collection_id", "item_key", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    event_id: str = Field(max_length=200)
    item_key: str = Field(max_length=64)
    ts: datetime
    price: float | None = None
    expires_at: datetime | None = None
    source: str = ""
    content_hash: str = Field(max_length=64, description="sha256 of the normalised event")
    ingested_at: datetime = Field(default_factory=utcnow)


class DroppedListing(SQLModel, table=True):
    """A listing event retention dropped (storage/retention.py: replaced by a later event of its
    item and source): its id and content are remembered, so the same event sent again is a
    duplicate, not stored anew, and other content under its id a conflict, as while it was held;
    for FAIRVALUE_AUDIT_RETENTION_DAYS after it was dropped (then retention forgets it)."""

    __tablename__ = "dropped_listings"
    __table_args__ = (UniqueConstraint("collection_id", "event_id", name="uq_dropped_listings_event"),)

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    event_id: str = Field(max_length=200)
    content_hash: str = Field(max_length=64)
    dropped_at: datetime = Field(default_factory=utcnow, index=True)  # retention forgets the oldest first


class RejectedListing(RejectedRow, table=True):
    """A listing row we refused."""

    __tablename__ = "rejected_listings"
    __table_args__ = (UniqueConstraint("collection_id", "row_hash", name="uq_rejected_listing_row"),)


class MarketDay(SQLModel, table=True):
    """Daily market inputs: the floor and the ETH/USD rate."""

    __tablename__ = "market_days"

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    day: date = Field(primary_key=True)
    floor: float | None = None
    eth_usd: float | None = None


class MarketDayRevision(SQLModel, table=True):
    """Every value a market day has had, in the order stored (market_days holds the latest). A
    floor corrected after a nowcast then leaves that snapshot's explanation reading the floor
    the nowcast read (storage/market.py), as the sales' stored_xact does for sales."""

    __tablename__ = "market_day_revisions"
    __table_args__ = (Index("ix_market_day_revisions_day", "collection_id", "day", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    day: date
    floor: float | None = None
    eth_usd: float | None = None
    stored_at: datetime = Field(default_factory=utcnow)
    # The storing transaction on PostgreSQL (the column's default, migration 0011), as for sales.
    stored_xact: int | None = Field(default=None, sa_type=BigInteger,
                                    sa_column_kwargs={"server_default": FetchedValue()})


class DailyPrice(SQLModel, table=True):
    """One observed market price of an item on one day (daily-priced collections: trading cards).

    Keyed by (collection, item, day) so collecting the same history again is an idempotent upsert;
    a source that revises a day overwrites it (updated_at says when)."""

    __tablename__ = "daily_prices"
    __table_args__ = (Index("ix_daily_prices_collection_day", "collection_id", "day"),)

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    item_key: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    price: float
    volume: int | None = None
    source: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("collection_id", "version", name="uq_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id")
    version: int
    estimator: str
    artifact_uri: str
    sha256: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    data_start: datetime | None = None
    data_end: datetime | None = None
    n_train: int = 0
    code_version: str = ""
    parent_id: int | None = Field(default=None, foreign_key="model_versions.id")
    created_at: datetime = Field(default_factory=utcnow)


class ModelAlias(SQLModel, table=True):
    """champion / contender → version: one row per alias, so a promotion is one update."""

    __tablename__ = "model_aliases"

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    alias: str = Field(primary_key=True, max_length=32)
    model_version_id: int = Field(foreign_key="model_versions.id")
    updated_at: datetime = Field(default_factory=utcnow)


class NowcastSnapshot(SQLModel, table=True):
    __tablename__ = "nowcast_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id", index=True)
    model_version_id: int = Field(foreign_key="model_versions.id")
    as_of: datetime = Field(description="The moment the nowcast was asked for; it orders the snapshots.")
    valued_at: datetime | None = Field(
        default=None,
        description="The moment the items were valued at, from data before it: as_of, or the last market known "
                    "when the market had gone silent (models.nowcast.valuation_moment). Null before migration 0007.",
    )
    data_cutoff: datetime | None = Field(default=None, description="Latest sale the snapshot saw.")
    n_items: int = 0
    status: str = Field(default="building", max_length=16,
                        description="building, published, shadow, superseded, failed (storage/snapshots.py)")
    data_read_at: datetime | None = Field(default=None, description=(
        "The moment the nowcast read its sales at: without a data_snapshot, those stored by then are the "
        "snapshot's data, a sale stored after it is not (pipeline.sales_since_published, the explanation's market)"))
    data_snapshot: str | None = Field(default=None, description=(
        "On PostgreSQL, the pg_snapshot the nowcast read its market under: exactly the sales it read, as "
        "they were (storage/market.py); null on SQLite and before migration 0010, where data_read_at decides"))
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None
    archive_uri: str | None = None
    archive_sha256: str | None = None
    rows_thinned_at: datetime | None = Field(default=None, description=(
        "When retention left the snapshot only the rows its readers still need (storage/retention.py); "
        "null for a snapshot kept whole"))
    # The thresholds its signals were judged at (FAIRVALUE_BUY_BELOW, _SELL_ABOVE, _SIGNAL_MAX_AGE_DAYS of
    # the worker that made it): a quote reads them, and a reader of a snapshot from before migration 0019
    # tells which price a signal was read from by the same rule (fairvalue.item_reads.signal_prices).
    # Null before migration 0017: read with the reader's settings.
    signal_buy_below: float | None = None
    signal_sell_above: float | None = None
    signal_max_age_days: float | None = None
    # Whether its rows record the price each signal read and its deviation (NowcastRow.signal_basis,
    # deviation): false before migration 0019, whose readers derive them again from the rows.
    signal_prices_recorded: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class NowcastRow(SQLModel, table=True):
    __tablename__ = "nowcast_rows"

    snapshot_id: int = Field(foreign_key="nowcast_snapshots.id", primary_key=True)
    item_key: str = Field(primary_key=True, max_length=64)
    fair_value: float
    p10: float | None = None
    p90: float | None = None
    signal: str = Field(default="HOLD", max_length=8)
    last_price: float | None = None
    last_sale_at: datetime | None = None
    # The item's open ask at the nowcast (models/listings.py; under the value it makes the signal
    # BUY); null when it had none, and in snapshots from before migration 0012.
    ask_price: float | None = None
    ask_at: datetime | None = None
    # What the nowcast judged the signal on (models.signals.market_signals): the price it read ("ask",
    # "last_sale"; null: none, so HOLD) and that price's deviation from the unrounded fair value, to the
    # decimals answers have. Readers answer these: derived again from the rounded fair_value, a value within
    # a rounding of a threshold read on its other side. Only in snapshots with signal_prices_recorded.
    signal_basis: str | None = Field(default=None, max_length=16)
    deviation: float | None = None


class PublishedSnapshot(SQLModel, table=True):
    """The pointer readers follow. Publishing a snapshot is one update of this row."""

    __tablename__ = "published_snapshots"

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    snapshot_id: int = Field(foreign_key="nowcast_snapshots.id")
    published_at: datetime = Field(default_factory=utcnow)


class TrainingRequest(SQLModel, table=True):
    """A durable ask to train a contender; the database, not the broker, decides who trains."""

    __tablename__ = "training_requests"

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id", index=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    state: str = Field(default="queued", index=True, max_length=16)
    reason: str = ""
    trigger: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    data_cutoff: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    claimed_by: str | None = None
    lease_expires_at: datetime | None = None
    not_before: datetime | None = Field(default=None, description="Retry backoff: not claimable before this.")
    published_at: datetime | None = None
    resend_until: datetime | None = Field(default=None, description="A message turned away by a live lease is "
                                          "sent again for this time: one at a time (requests.schedule_resend).")
    model_version_id: int | None = Field(default=None, foreign_key="model_versions.id")
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PromotionDecision(SQLModel, table=True):
    """Every change of champion, and every refusal, with the numbers it was based on."""

    __tablename__ = "promotion_decisions"

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="collections.id", index=True)
    training_request_id: int | None = Field(default=None, foreign_key="training_requests.id")
    contender_version_id: int | None = Field(default=None, foreign_key="model_versions.id")
    champion_version_id: int | None = Field(default=None, foreign_key="model_versions.id")
    decision: str = Field(max_length=16, description="promote, shadow, reject, rollback (models/gates.py)")
    decided_by: str = Field(max_length=16, description="gates, monitor or operator (models/gates.py)")
    reason: str = ""
    numbers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class DueRollback(SQLModel, table=True):
    """A rollback the monitor decided and could not carry out yet: the artifact store could not read
    the model it restores back. Kept, one per collection, until a later run carries it out or refuses
    it on record, even once the probation that judged it has ended (the probation alone would let it
    lapse); moot once the champion moves (storage.registry.promote, a rollback)."""

    __tablename__ = "due_rollbacks"

    collection_id: int = Field(foreign_key="collections.id", primary_key=True)
    champion_version_id: int = Field(foreign_key="model_versions.id", description="the champion judged worse")
    previous_version_id: int = Field(foreign_key="model_versions.id", description="the model to restore")
    reason: str = ""
    numbers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    decided_at: datetime = Field(default_factory=utcnow)


class LoopState(SQLModel, table=True):
    """Operators pause a loop (policy, training, monitor, nowcast); its task then skips."""

    __tablename__ = "loop_states"

    loop: str = Field(primary_key=True, max_length=32)
    paused: bool = False
    reason: str = ""
    updated_at: datetime = Field(default_factory=utcnow)  # when it was last paused or resumed
    changed_by: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""},
                            description="who paused or resumed it: user@host of the CLI")


class TaskRun(SQLModel, table=True):
    __tablename__ = "task_runs"
    __table_args__ = (Index("ix_task_runs_name_started", "task_name", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    task_name: str = Field(max_length=100)
    task_id: str | None = Field(default=None, max_length=64)
    # The collection the run was for: written as it starts when the task knows it, and its detail's
    # "collection" copied when it ends; None for a task of every collection (the sweep). Last runs are
    # per task and collection.
    collection: str | None = Field(default=None, max_length=100)
    status: str = Field(default="running", max_length=16, description="running, ok, failed, skipped, abandoned "
                        "(storage/runs.py)")
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApiToken(SQLModel, table=True):
    """An operator's bearer token. Only its sha256 is stored: the token is printed once at
    creation and cannot be read back. Revoking keeps the row (who had access, and until when)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    token_sha256: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class WebhookDelivery(SQLModel, table=True):
    """Every signed webhook call we answered, accepted or refused, with why.

    `accepted_signature` (the sha256 of the signature header) is unique: a delivery whose exact
    signature was already accepted is a replay and is refused. Refusals leave it NULL, so one
    sender retrying a refused call is not blocked. Bodies are not kept, only their digest."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    signature_sha256: str | None = Field(default=None, max_length=64, index=True)
    accepted_signature: str | None = Field(default=None, max_length=64, unique=True)
    signed_at: datetime | None = Field(default=None, description="The t= of the signature header.")
    body_sha256: str = Field(max_length=64)
    body_bytes: int = 0
    status_code: int
    outcome: str = Field(max_length=32, index=True, description="accepted, or why it was refused")
    reason: str = ""
    client: str = Field(default="", max_length=64)
