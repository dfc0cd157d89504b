"""Retention at the bundled market's scale: what thinning old snapshots costs and leaves.

    python bench/retention.py [--days 5 --items 10000 --sales-per-day 60]

In a scratch PostgreSQL database: a collection of `--items` items, `--days` days of a nowcast
every 30 minutes (48 published, archived snapshots a day, one row per item each, written by
COPY as a nowcast writes them) and `--sales-per-day` sales at random moments. Then
storage.retention.apply_retention, as the hourly archive task calls it, until nothing is left
to thin: its seconds, calls, and the rows before and after (the day's last snapshots whole,
plus each sold item's row in the snapshot that scores it). Baseline of the same run: a bare
DELETE of every row of the same snapshots in a twin collection (no rows kept, no look-up of
the sales).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ must not shadow the project's packages

from bench import harness  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


def build(slug: str, days: int, n_items: int, sales_per_day: int, seed: int) -> list[int]:
    """The collection, its snapshots and sales; the ids of its snapshots."""
    from storage.bulk import copy_rows
    from storage.db import session_scope
    from storage.ingest import add_items, ensure_collection
    from storage.snapshots import PUBLISHED
    from storage.tables import ModelVersion, NowcastSnapshot, Sale

    rng = np.random.default_rng(seed)
    keys = [str(i) for i in range(n_items)]
    snapshot_ids = []
    with session_scope() as session:
        coll = ensure_collection(session, slug)
        add_items(session, coll, [{"item_key": key} for key in keys])
        version = ModelVersion(collection_id=coll.id, version=1, estimator="bench", artifact_uri="v1", sha256="0")
        session.add(version)
        session.flush()
        coll_id, version_id = coll.id, version.id
    for tick in range(days * 48):
        at = START + timedelta(minutes=30 * tick)
        with session_scope() as session:
            snap = NowcastSnapshot(collection_id=coll_id, model_version_id=version_id, as_of=at, n_items=n_items,
                                   status=PUBLISHED, published_at=at, created_at=at, archive_uri="s3://bench/x")
            session.add(snap)
            session.flush()
            values = rng.lognormal(4, 0.5, n_items)
            copy_rows(session, "nowcast_rows", ["snapshot_id", "item_key", "fair_value", "p10", "p90", "signal"],
                      ((snap.id, key, v, v * 0.8, v * 1.25, "HOLD") for key, v in zip(keys, values, strict=True)))
            snapshot_ids.append(snap.id)
    n_sales = days * sales_per_day
    moments = START + np.sort(rng.uniform(0, days * 86400, n_sales)) * timedelta(seconds=1)
    with session_scope() as session:
        session.add_all(Sale(collection_id=coll_id, event_id=f"{slug}-{i}", item_key=str(rng.integers(n_items)),
                             ts=ts, price=60.0, content_hash="0") for i, ts in enumerate(moments))
    return snapshot_ids


def count_rows(snapshot_ids: list[int]) -> int:
    from sqlalchemy import func, select

    from storage.db import session_scope
    from storage.tables import NowcastRow

    with session_scope() as session:
        return session.execute(select(func.count()).select_from(NowcastRow)
                               .where(NowcastRow.snapshot_id.in_(snapshot_ids))).scalar_one()


def run(args) -> dict:
    from sqlalchemy import delete

    from storage.db import session_scope
    from storage.ingest import ensure_collection
    from storage.retention import apply_retention
    from storage.tables import NowcastRow

    timer = harness.Timer()
    thinned_ids = build("retention-bench", args.days, args.items, args.sales_per_day, seed=1)
    bare_ids = build("retention-bare", args.days, args.items, args.sales_per_day, seed=1)
    built = timer.lap()
    rows_before = count_rows(thinned_ids)
    now = START + timedelta(days=args.days + 15)  # every snapshot past the 14 days kept
    calls, thinned, deleted = 0, 0, 0
    timer.lap()
    while True:
        with session_scope() as session:
            report = apply_retention(session, ensure_collection(session, "retention-bench"), now, keep_days=14)
        calls += 1
        if report.snapshots_thinned == 0:
            break
        thinned, deleted = thinned + report.snapshots_thinned, deleted + report.rows_deleted
    retention_seconds = timer.lap()
    with session_scope() as session:
        session.execute(delete(NowcastRow.__table__).where(NowcastRow.snapshot_id.in_(bare_ids)))
    bare_seconds = timer.lap()
    rows_after = count_rows(thinned_ids)
    return {"days": args.days, "items": args.items, "snapshots": len(thinned_ids), "build_s": round(built, 1),
            "rows_before": rows_before, "rows_after": rows_after, "snapshots_thinned": thinned,
            "rows_deleted": deleted, "calls": calls, "retention_s": round(retention_seconds, 2),
            "bare_delete_s": round(bare_seconds, 2), "ratio_vs_bare": round(retention_seconds / bare_seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--sales-per-day", type=int, default=60)
    args = parser.parse_args()
    with harness.scratch_database() as url:
        os.environ["FAIRVALUE_DATABASE_URL"] = url
        result = run(args)
    for name, value in result.items():
        print(f"{name:>18}: {value}")
    kept = result["rows_after"] / result["rows_before"]
    print(f"kept {kept:.2%} of the rows ({result['rows_after'] / result['days']:,.0f} a day); "
          f"retention took {result['ratio_vs_bare']}x a bare delete of every row")


if __name__ == "__main__":
    main()
