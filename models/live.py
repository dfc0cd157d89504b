"""Forward live scoring: each sale against the value that was published before it happened.

Pure: plain functions over DataFrames.

score_sales() matches every sale to the snapshot with the latest published_at strictly before the
sale's ts, among the snapshots given (the caller passes the published ones, or the shadow snapshots of
one model version), then takes that snapshot's row for the sale's item. Strictly before: a value
published at the very moment of the sale could not have been seen by the buyer, so it is not a forecast.
A sale whose matched snapshot has no row for its item is dropped; it does not fall back to an older
snapshot, because the claim being measured is what was on display at the time.

paired() keeps the sales two scored frames have in common, so two models are compared on the same sales.

Timestamps are naive UTC datetime64 (tz-aware input is converted to UTC and made naive); item keys are
compared as strings.
"""

from __future__ import annotations

import pandas as pd

from models.times import naive_utc  # merge_asof needs both keys at the same resolution: ns

SCORED_COLUMNS = ["event_id", "ts", "item_key", "price", "fair_value", "p10", "p90", "snapshot_id", "published_at",
                  "model_version_id"]


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def score_sales(sales: pd.DataFrame, snapshots: pd.DataFrame,
                rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """(scored, counts).

    sales: event_id, ts, item_key, price. snapshots: snapshot_id, published_at, model_version_id.
    rows: snapshot_id, item_key, fair_value, p10, p90 (at most one row per snapshot and item).

    scored: one row per scored sale with SCORED_COLUMNS, sorted by (ts, event_id), fresh index.
    Snapshots published at the same instant are ordered by snapshot_id and the highest wins.
    counts: n_sales (input rows), n_scored, no_snapshot (no snapshot published strictly before the
    sale, or a missing ts), no_row (the matched snapshot has no row for the item);
    n_sales == n_scored + no_snapshot + no_row.
    """
    _require(sales, ["event_id", "ts", "item_key", "price"], "sales")
    _require(snapshots, ["snapshot_id", "published_at", "model_version_id"], "snapshots")
    _require(rows, ["snapshot_id", "item_key", "fair_value", "p10", "p90"], "rows")
    if rows.duplicated(["snapshot_id", "item_key"]).any():
        raise ValueError("rows has more than one row for some (snapshot_id, item_key)")

    s = sales[["event_id", "ts", "item_key", "price"]].copy()
    s["ts"] = naive_utc(s["ts"])
    s["item_key"] = s["item_key"].astype(str)
    snaps = snapshots[["snapshot_id", "published_at", "model_version_id"]].copy()
    snaps["published_at"] = naive_utc(snaps["published_at"])
    snaps = snaps.dropna(subset=["published_at"]).sort_values(["published_at", "snapshot_id"], kind="stable")
    r = rows[["snapshot_id", "item_key", "fair_value", "p10", "p90"]].copy()
    r["item_key"] = r["item_key"].astype(str)

    n_sales = len(s)
    s = s.dropna(subset=["ts"]).sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    if s.empty or snaps.empty:
        counts = {"n_sales": n_sales, "n_scored": 0, "no_snapshot": n_sales, "no_row": 0}
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c, sales, snapshots, rows)) for c in SCORED_COLUMNS}), counts

    matched = pd.merge_asof(s, snaps, left_on="ts", right_on="published_at", direction="backward",
                            allow_exact_matches=False)
    matched = matched[matched["snapshot_id"].notna()]
    matched = matched.astype({"snapshot_id": snaps["snapshot_id"].dtype,
                              "model_version_id": snaps["model_version_id"].dtype})
    r = r.astype({"snapshot_id": snaps["snapshot_id"].dtype})
    scored = matched.merge(r, on=["snapshot_id", "item_key"], how="inner", validate="many_to_one")
    scored = scored.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)[SCORED_COLUMNS]
    counts = {
        "n_sales": n_sales,
        "n_scored": len(scored),
        "no_snapshot": n_sales - len(matched),
        "no_row": len(matched) - len(scored),
    }
    return scored, counts


def _dtype(column: str, sales: pd.DataFrame, snapshots: pd.DataFrame, rows: pd.DataFrame):
    if column in ("ts", "published_at"):
        return "datetime64[ns]"
    for frame in (sales, snapshots, rows):
        if column in frame.columns:
            return frame[column].dtype
    return object


def paired(champion_scored: pd.DataFrame, previous_scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two scored frames restricted to the event_ids both contain, in the same row order (the
    first frame's), with fresh indexes: row i of each is the same sale. Each frame must have unique
    event_ids."""
    for name, frame in (("champion_scored", champion_scored), ("previous_scored", previous_scored)):
        _require(frame, ["event_id"], name)
        if frame["event_id"].duplicated().any():
            raise ValueError(f"{name} has duplicate event_ids")
    common = champion_scored["event_id"].isin(previous_scored["event_id"])
    first = champion_scored[common].reset_index(drop=True)
    position = pd.Series(range(len(first)), index=first["event_id"])
    second = previous_scored[previous_scored["event_id"].isin(first["event_id"])]
    second = second.iloc[position.loc[second["event_id"]].to_numpy().argsort(kind="stable")].reset_index(drop=True)
    return first, second
