"""Ingest speed: sales/s from a file into PostgreSQL, and signed webhook calls/s.

    python bench/ingest.py [--sales 50000 --calls 2000 --connections 16]

In a scratch PostgreSQL database holding the bundled punks and market days:
1. `fairvalue ingest sales FILE` (pipeline.ingest_file: validate, dedupe by event id, store,
   keep rejects) on a CSV of `--sales` synthetic sales of the bundled punks (bench/synthetic.py).
   Baseline of the same run: a bare COPY of the same rows into the same table.
2. `--calls` signed webhook calls (one sale each, distinct event ids, signed just before)
   POSTed by bench/loadgen.py to the API under uvicorn; baseline: a bare Starlette endpoint
   that reads the body and answers 202, same server and generator. The follow-up nowcast
   message goes to the embedded filesystem broker.

Targets (issue #6): >= 20,000 sales/s from a file; >= 500 webhook calls/s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # bench/ must not shadow the project's packages

from bench import harness  # noqa: E402
from bench.api import start_server  # noqa: E402

WALLETS = 5_000


def write_sales_file(path: Path, n: int, seed: int, prefix: str) -> None:
    from bench import synthetic

    bundled = synthetic.load_bundled()
    coll = synthetic.generate(10_000, seed, bundled)  # keys "0".."9999": the bundled punks' ids
    sales = coll.sales.sample(n=n, random_state=seed, replace=n > len(coll.sales))
    sales = sales.sort_values("ts")
    # Parties drawn from a pool of wallets, as in a real market: a few pairs trade again and are
    # flagged as wash trades (storage/wash.py); one fixed pair would make every sale one.
    wallets = np.random.default_rng(seed).integers(0, WALLETS, size=(len(sales), 2))
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["event_id", "timestamp", "punk_id", "price_eth", "seller", "buyer", "source"])
        for i, (ts, key, price) in enumerate(zip(sales["ts"], sales["item_key"], sales["price"], strict=True)):
            out.writerow([f"{prefix}-{i}", ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), key, price,
                          f"0x{wallets[i, 0]:040x}", f"0x{wallets[i, 1]:040x}", "bench"])


def file_step(path: str) -> dict:
    """Seed items and market days, then time ingest_file and a bare COPY of the same rows."""
    from datetime import UTC, datetime

    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from models.times import default_time_precision
    from storage import ingest as ingest_store
    from storage.bulk import copy_rows
    from storage.bundled import read_market_days, read_punks
    from storage.db import session_scope

    settings = get_settings()
    data_dir = settings.data_dir / settings.collection
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        ingest_store.add_items(session, coll, read_punks(data_dir / "punks.csv"))
        ingest_store.put_market_days(session, coll, read_market_days(data_dir / "floor.csv",
                                                                     data_dir / "eth_usd.csv"))
    timer = harness.Timer()
    report = pipeline.ingest_file(Path(path), settings)
    ingest_s = timer.lap()
    with open(path, newline="") as fh:
        rows = [(coll.id, f"bare-{r['event_id']}", r["punk_id"],
                 datetime.fromisoformat(r["timestamp"]).astimezone(UTC), float(r["price_eth"]), r["seller"],
                 r["buyer"], r["source"], default_time_precision(r["source"]), "", datetime.now(UTC))
                for r in csv.DictReader(fh)]
    timer.lap()
    with session_scope() as session:  # the same columns ingest fills, so the baseline writes as much
        copy_rows(session, "sales", ("collection_id", "event_id", "item_key", "ts", "price", "seller", "buyer",
                                     "source", "time_precision", "content_hash", "ingested_at"), rows)
    copy_s = timer.lap()
    return {"ingest_s": ingest_s, "copy_s": copy_s, "rows": len(rows), **report.as_dict()}


def signed_bodies(path: Path, target: str, n: int, secret: str) -> None:
    from api.signing import sign

    wallets = np.random.default_rng(n).integers(0, WALLETS, size=(n, 2))  # each call's wash check has work
    with path.open("w") as fh:
        for i in range(n):
            body = json.dumps({"event_id": f"hook-{i}", "timestamp": "2021-12-30T12:00:00Z",
                               "punk_id": str(i % 10_000), "price_eth": 80.0 + i % 50, "source": "bench",
                               "seller": f"0x{wallets[i, 0]:040x}", "buyer": f"0x{wallets[i, 1]:040x}"})
            headers = {"Fairvalue-Signature": sign(secret, body.encode())} if target != "/bare-post" else {}
            fh.write(json.dumps({"path": target, "body": body, "headers": headers}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30, help="upper bound of each webhook run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "file":
        return harness.emit(file_step(args.file))

    secret = "bench-secret"
    with harness.scratch_database() as url, harness.artifact_store("dir") as store_env, \
            tempfile.TemporaryDirectory(prefix="fairvalue-bench-") as tmp:
        env = {"FAIRVALUE_DATABASE_URL": url, "FAIRVALUE_VAR_DIR": tmp, "FAIRVALUE_WEBHOOK_SECRET": secret,
               **store_env}
        sales_csv = Path(tmp) / "sales.csv"
        write_sales_file(sales_csv, args.sales, args.seed, "file")
        f = harness.run_child([__file__, "--step", "file", "--file", str(sales_csv)], env, 900)

        ports = {"bare": harness.free_port(), "api": harness.free_port()}
        servers = [start_server("bare_app:app", ports["bare"], env, ROOT / "bench"),
                   start_server("api.app:app", ports["api"], env)]
        hooks = {}
        try:
            for kind, port, target in (("bare", ports["bare"], "/bare-post"),
                                       ("webhook", ports["api"], "/v1/webhooks/sales")):
                bodies = Path(tmp) / f"{kind}.jsonl"
                signed_bodies(bodies, target, args.calls, secret)
                hooks[kind] = harness.run_child(
                    [str(ROOT / "bench" / "loadgen.py"), "--url", f"http://127.0.0.1:{port}", "--kind", "post",
                     "--bodies", str(bodies), "--seconds", str(args.seconds), "--connections",
                     str(args.connections)], {}, args.seconds + 120)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=30)
        stored = subprocess.run(
            [sys.executable, "-c", "from sqlmodel import select, func; from storage.db import session_scope; "
             "from storage.tables import Sale\nwith session_scope() as s: print(s.exec(select(func.count())"
             ".select_from(Sale).where(Sale.event_id.like('hook-%'))).one())"],
            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=True)

    rate, bare_rate = f["rows"] / f["ingest_s"], f["rows"] / f["copy_s"]
    print(f"file: {f['rows']:,} sales in {f['ingest_s']:.2f} s = {rate:,.0f} sales/s "
          f"(accepted {f['accepted']:,}, duplicate {f['duplicate']}, rejected {f['rejected']} "
          f"{f['rejected_by_reason']})")
    print(f"baseline: bare COPY of the same rows {f['copy_s']:.2f} s = {bare_rate:,.0f} rows/s; "
          f"ingest = {rate / bare_rate:.2f}x COPY   [target >= 20,000/s: {harness.verdict(rate >= 20_000)}]")
    w, b = hooks["webhook"], hooks["bare"]
    w_rate, b_rate = w["requests"] / w["seconds"], b["requests"] / b["seconds"]
    print(f"webhook: {w['requests']} signed calls, {w_rate:,.0f} calls/s, p50 {w['p50_ms']:.1f} ms, "
          f"p95 {w['p95_ms']:.1f} ms, non-2xx {w['non2xx'] + w['errors']}; stored {stored.stdout.strip()} sales")
    print(f"baseline: bare POST endpoint {b_rate:,.0f} calls/s; webhook = {w_rate / b_rate:.2f}x bare   "
          f"[target >= 500/s: {harness.verdict(w_rate >= 500)}]")


if __name__ == "__main__":
    main()
