"""Readers for the bundled market files (data/cryptopunks/*.csv) and backfill files.

Everything is read as text: a row we reject is kept exactly as it came.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any


def read_punks(path: Path) -> list[dict[str, Any]]:
    items = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            accessories = [a.strip() for a in row["accessories"].split("/") if a.strip()]
            items.append(
                {
                    "item_key": str(int(row["id"])),
                    "item_type": row["type"],
                    "attributes": {
                        "gender": row["gender"],
                        "skin_tone": row["skin_tone"],
                        "accessory_count": int(row["accessory_count"]),
                        "accessories": accessories,
                    },
                }
            )
    return items


def read_market_days(floor_csv: Path | None, eth_usd_csv: Path | None) -> dict[date, dict[str, float]]:
    days: dict[date, dict[str, float]] = {}
    for path, column, key in ((floor_csv, "floor_eth", "floor"), (eth_usd_csv, "eth_usd", "eth_usd")):
        if path is None:
            continue
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get(column) in (None, ""):
                    continue
                days.setdefault(date.fromisoformat(row["date"]), {})[key] = float(row[column])
    return days


def read_sales_file(path: Path) -> Iterator[dict[str, Any]]:
    """CSV (header row) or JSON lines, chosen by the file's suffix."""
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        with path.open() as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield {"_line": lineno, "_raw": line.rstrip("\n")[:2000], "_error": str(exc)}
                    continue
                yield value if isinstance(value, dict) else {
                    "_line": lineno, "_raw": line.rstrip("\n")[:2000], "_error": "a line must hold a JSON object"}
    else:
        with path.open(newline="") as fh:
            yield from csv.DictReader(fh)
