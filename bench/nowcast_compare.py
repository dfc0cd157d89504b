"""Two checkouts' nowcasts on one scratch database: the same values to the bit, and their stage
times measured alternately (a change to the nowcast path is checked against its base this way).

    git worktree add --detach /tmp/base main     # with its own .venv (pip install -e ".[test,bench]")
    OMP_NUM_THREADS=1 python bench/nowcast_compare.py /tmp/base . --rounds 4 --repeat 3

Each checkout values the bundled market at one fixed moment with the same champion; the items,
sales and market it loaded, its values (floats compared bit for bit), the snapshot CSV, the rows
read back from PostgreSQL and the archive's sha256 must be equal. Then each runs `repeat`
nowcasts per round in a fresh process, the order of the two swapped every round; it prints the
best and median seconds of each stage, wall and this process's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ must not shadow the project's packages

from bench import harness  # noqa: E402

STAGES = ("wall", "cpu", "load", "value", "write", "publish", "archive", "shadows")


def child(mode: str, out: str, repeat: int) -> None:
    """In a checkout (its own python): `dump` what one nowcast at a fixed moment read and wrote,
    or `time` `repeat` nowcasts after a first (a worker is long-lived)."""
    import time
    from datetime import UTC, datetime

    import pandas as pd

    from fairvalue import kinds, pipeline

    assert Path(pipeline.__file__).resolve().is_relative_to(Path.cwd().resolve()), pipeline.__file__
    from fairvalue.settings import get_settings
    from storage.artifacts import get_store
    from storage.db import session_scope
    from storage.snapshots import snapshot_csv, snapshot_values

    settings = get_settings()
    as_of = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    if mode == "dump":
        coll, _, model, data, _ = pipeline.champion_and_market(settings, get_store(settings), listings_at=as_of)
        t = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None)
        kind = kinds.kind_of(coll)
        values = kind.value_all(model, data, kind.valued_at(data, t, settings), settings, asked_at=t)
        result = pipeline.nowcast(settings, as_of=as_of)
        with session_scope() as session:
            rows = snapshot_values(session, result.snapshot_id)
        Path(out).write_bytes(pickle.dumps({
            "items": data.items, "sales": data.sales, "market": data.market, "values": values, "rows": rows,
            "csv": snapshot_csv(values), "archive": (result.archive_uri or "").rsplit("-", 1)[-1]}))
        return
    pipeline.nowcast(settings)
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = pipeline.nowcast(settings)
        runs.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, **result.seconds})
    Path(out).write_text(json.dumps(runs))


def differences(base: dict, new: dict) -> list[str]:
    import numpy as np
    import pandas as pd

    found = []
    for name in ("items", "sales", "market", "values", "rows"):
        try:
            pd.testing.assert_frame_equal(base[name], new[name], check_exact=True)
        except AssertionError as exc:
            found.append(f"{name}: {str(exc)[:300]}")
            continue
        for column in base[name].columns:
            a, b = base[name][column].to_numpy(), new[name][column].to_numpy()
            if a.dtype.kind == "f" and not np.array_equal(a.view(np.int64), b.view(np.int64)):
                found.append(f"{name}.{column}: floats differ in their bits")
    for name in ("csv", "archive"):
        if base[name] != new[name]:
            found.append(f"{name} differs")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="the checkout to compare against (with its own .venv)")
    parser.add_argument("new", type=Path, help="the changed checkout (with its own .venv)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="nowcasts per round and checkout")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # run by the checkout's python in its directory: its packages, not this file's
        sys.path.insert(0, os.getcwd())
        return child(args.child[0], args.child[1], int(args.child[2]))

    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    me = str(Path(__file__).resolve())
    with harness.scratch_database() as url, harness.artifact_store("s3") as store_env, \
            tempfile.TemporaryDirectory(prefix="fairvalue-compare-") as tmp:
        env = {**os.environ, "FAIRVALUE_DATABASE_URL": url, "FAIRVALUE_VAR_DIR": tmp,
               "FAIRVALUE_CODE_VERSION": "bench", **store_env}

        def run(tree: Path, *step: str) -> None:
            subprocess.run([str(tree / ".venv/bin/python"), me, str(trees["base"]), str(trees["new"]), "--child",
                            *step], cwd=tree, env=env, check=True, capture_output=True)

        harness.run_child([str(Path(__file__).with_name("nowcast.py")), "--step", "setup-bundled"], env, 900)
        dumps = {}
        for name, tree in trees.items():
            run(tree, "dump", f"{tmp}/{name}.pkl", "0")
            dumps[name] = pickle.loads(Path(f"{tmp}/{name}.pkl").read_bytes())
        found = differences(dumps["base"], dumps["new"])
        print("values: " + ("identical (items, sales, market, values bit for bit, rows, csv, archive sha256)"
                            if not found else "DIFFER\n  " + "\n  ".join(found)))
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
                run(trees[name], "time", f"{tmp}/{name}.json", str(args.repeat))
                runs[name] += json.loads(Path(f"{tmp}/{name}.json").read_text())
        print(f"{'':6}" + "".join(f"{s:>16}" for s in STAGES) + "   (best / median s)")
        for name, got in runs.items():
            cells = [f"{min(x[s] for x in got):.3f}/{harness.median([x[s] for x in got]):.3f}" for s in STAGES]
            print(f"{name:6}" + "".join(f"{c:>16}" for c in cells))
        best = {name: min(x["wall"] for x in got) for name, got in runs.items()}
        median = {name: harness.median([x["wall"] for x in got]) for name, got in runs.items()}
        print(f"new / base: best {best['new'] / best['base']:.2f}, median {median['new'] / median['base']:.2f}")
        if found:
            sys.exit(1)


if __name__ == "__main__":
    main()
