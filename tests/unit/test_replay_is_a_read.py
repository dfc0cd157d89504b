"""A replay or backtest reads the database; it never writes to it. One of the cards on a database
that had not loaded them made the `cards` collection (with no first day), after which `status
--collection cards` listed an empty collection instead of "unknown collection"."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fairvalue(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAIRVALUE_VAR_DIR": str(tmp_path), "FAIRVALUE_DATABASE_URL": "", "FAIRVALUE_BROKER_URL": "",
           "FAIRVALUE_ARTIFACTS_URL": "", "FAIRVALUE_COLLECTION": "cryptopunks", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fairvalue.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_replay_of_a_collection_not_stored_makes_none(tmp_path):
    assert fairvalue(tmp_path, "db", "upgrade").returncode == 0
    bundled = fairvalue(tmp_path, "backtest", "--collection", "cards", "--from", "2025-07-01", "--to", "2025-07-05",
                        "--json")
    assert bundled.returncode == 0, bundled.stderr  # auto: the bundled prices
    for args in (["backtest", "--collection", "cards"], ["replay"]):
        stored_only = fairvalue(tmp_path, *args, "--from", "2025-07-01", "--to", "2025-07-05", "--source", "db")
        assert stored_only.returncode == 1 and "Traceback" not in stored_only.stderr, stored_only.stderr
        said = " ".join(stored_only.stderr.split())
        assert "unknown collection" in said and said.endswith("; or replay --source bundled"), stored_only.stderr
    with sqlite3.connect(tmp_path / "fairvalue.db") as db:
        assert db.execute("select slug from collections").fetchall() == []
