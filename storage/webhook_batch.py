"""The pure half of group-committed webhook calls: which calls of a batch are replays, which
call claims each event id, and each call's own report once the batch is stored.

The rule throughout: a batch must answer every call exactly as processing the calls one after
another, in arrival order, would have. So an event id is claimed by the first call that carries
it; a later call of the batch with the same content sees a duplicate, with other content a
conflict (kept in rejected_sales), as if the first call had already committed. No I/O here
(storage/webhook_calls.py runs the statements)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.validation import Reason, Rejection, ValidatedBatch
from storage.ingest import IngestReport, already_stored, judge_contested


@dataclass(frozen=True)
class WebhookCall:
    """A call that passed the signature, JSON and shape checks: what ingest needs of it."""

    sales: list[Mapping[str, Any]]
    body: bytes
    digest: str
    signed_at: int
    client: str


@dataclass(frozen=True)
class CallOutcome:
    """A replayed delivery (`accepted_before`: when it was first accepted) or an ingest report."""

    accepted_before: datetime | None = None
    report: IngestReport | None = None


def replays(calls: Sequence[WebhookCall], accepted: Mapping[str, datetime], now: datetime) -> dict[int, datetime]:
    """Index of each replayed call -> when its delivery was first accepted: already stored in
    `accepted`, or processed by an earlier call of this batch (accepted `now`)."""
    first_at = dict(accepted)
    found = {}
    for i, call in enumerate(calls):
        if call.digest in first_at:
            found[i] = first_at[call.digest]
        else:
            first_at[call.digest] = now  # every call that reaches ingest marks its digest, accepted or conflict
    return found


def first_claims(validated: Sequence[ValidatedBatch]) -> dict[str, int]:
    """Event id -> index of the first call (in arrival order) whose clean sales carry it.
    validate_batch already keeps one clean sale per event id within a call."""
    claims: dict[str, int] = {}
    for i, batch in enumerate(validated):
        for sale in batch.clean:
            claims.setdefault(sale.event_id, i)
    return claims


def claimed_sales(validated: Sequence[ValidatedBatch], claims: Mapping[str, int]) -> list:
    """The sales to insert: each event id once, as its first call carries it."""
    return [sale for i, batch in enumerate(validated) for sale in batch.clean if claims[sale.event_id] == i]


@dataclass
class CallSettlement:
    report: IngestReport
    rejections: list[Rejection]


def settle(validated: Sequence[ValidatedBatch], claims: Mapping[str, int], inserted: set[str],
           stored_hash: Mapping[str, str]) -> list[CallSettlement]:
    """Each call's report and rejections. `inserted`: event ids the batch's insert stored;
    `stored_hash`: the content hash now stored for every claimed event id (inserted or not)."""
    settled = []
    for i, batch in enumerate(validated):
        stored_by_this_call = [s.event_id in inserted and claims[s.event_id] == i for s in batch.clean]
        accepted = [s.event_id for s, mine in zip(batch.clean, stored_by_this_call, strict=True) if mine]
        duplicates, conflicts = already_stored(
            [s for s, mine in zip(batch.clean, stored_by_this_call, strict=True) if not mine], stored_hash)
        repeats, refused = judge_contested(batch.rejected, stored_hash)
        report = IngestReport(duplicate=batch.repeated_in_batch + duplicates + repeats)
        rejections = refused + conflicts
        report.accepted = len(accepted)
        report.accepted_event_ids = sorted(accepted)
        report.rejected = len(rejections)
        report.reasons.update(r.reason for r in rejections)
        settled.append(CallSettlement(report, rejections))
    return settled


def count_kept_before(settled: Sequence[CallSettlement], kept_now: set[str]) -> None:
    """Set each call's `rejected_kept_before`: its rejected rows that were kept already, before
    this batch or by an earlier call of it (`kept_now`: the row hashes the batch kept)."""
    counted: set[str] = set()
    for call in settled:
        kept_before = 0
        for rejection in call.rejections:
            if rejection.row_hash in kept_now and rejection.row_hash not in counted:
                counted.add(rejection.row_hash)
            else:
                kept_before += 1
        call.report.rejected_kept_before = kept_before


def every_sale_conflicts(report: IngestReport) -> bool:
    """The call is refused (409): every sale reuses a stored event id with other content."""
    conflicts = report.reasons.get(Reason.DUPLICATE_CONFLICT, 0)
    return report.accepted == 0 and report.duplicate == 0 and conflicts == report.rejected > 0
