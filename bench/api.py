"""API throughput and latency under uvicorn, against a bare Starlette endpoint in the same run.

    python bench/api.py [--seconds 5 --connections 64 --rounds 2 --train-max-iter 40]
    python bench/api.py --server-env FAIRVALUE_SOME_LIMIT=100000   # settings for the API server

A scratch PostgreSQL database gets the bundled market, a small champion and one published
nowcast. Then `fairvalue`'s app (api.app:app, with whatever middleware it has) and the bare
app (bench/bare_app.py) each run under uvicorn in their own process on loopback, and a load
generator in another process (wrk when installed, else bench/loadgen.py) hits, for
`--seconds` at `--connections` concurrent keep-alive connections:
  bare       GET /bare/{id}                        (baseline)
  item       GET /v1/items/{random id}
  bulk       GET /v1/valuations?ids=<100 random ids>
  bare-bulk  GET /bare-bulk?ids=<100 random ids>   (context: a fixed body of a bulk answer's size)
Rounds alternate the endpoints; the best round of each is reported (noise on a shared host
only ever slows a round). Non-2xx answers are counted and reported: a rate limiter that
answers 429 shows up there instead of as speed.

Targets (issue #6): item and bulk >= 0.6x bare requests/s; p95 <= 10 ms at 64 concurrent.
The bare-bulk row says how much of the bulk read's cost is moving its body alone: its ratio to
the bare endpoint is the best any bulk read of that size could reach on this host.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # this file is bench/api.py: the `api` package must not resolve to it

from bench import harness  # noqa: E402

BULK_IDS = 100


def prepare(env: dict[str, str]) -> None:
    code = ("from bench.nowcast import setup_bundled; setup_bundled(); "
            "from fairvalue import pipeline; pipeline.nowcast()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, check=True, timeout=600,
                   stdout=subprocess.DEVNULL)


def start_server(app: str, port: int, env: dict[str, str], app_dir: Path = ROOT) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{app} exited: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except urllib.error.HTTPError:
            return proc  # it answers (404 is fine)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{app} did not answer within 60 s")


WRK_SCRIPT = """
local kind = os.getenv("BENCH_KIND")
math.randomseed(7)
request = function()
  if kind == "bulk" or kind == "bare-bulk" then
    local ids = {}
    for i = 1, tonumber(os.getenv("BENCH_BULK_IDS")) do ids[i] = math.random(0, 9999) end
    local path = kind == "bulk" and "/v1/valuations" or "/bare-bulk"
    return wrk.format(nil, path .. "?ids=" .. table.concat(ids, ","))
  elseif kind == "item" then
    return wrk.format(nil, "/v1/items/" .. math.random(0, 9999))
  end
  return wrk.format(nil, "/bare/" .. math.random(0, 9999))
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_ms": %f, "p95_ms": %f, "p99_ms": %f, '
    .. '"errors": %d, "non2xx": %d}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    errors, summary.errors.status))
end
"""


def load(kind: str, port: int, seconds: float, connections: int, wrk_script: Path | None) -> dict:
    """One bounded load run; returns requests/s and latency percentiles."""
    url = f"http://127.0.0.1:{port}"
    if wrk_script is not None:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "5s",
             "-s", str(wrk_script), url], env={**os.environ, "BENCH_KIND": kind, "BENCH_BULK_IDS": str(BULK_IDS)},
            capture_output=True, text=True, timeout=seconds + 60, check=True)
        import json

        result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    else:
        result = harness.run_child(
            [str(ROOT / "bench" / "loadgen.py"), "--url", url, "--kind", kind, "--seconds", str(seconds),
             "--connections", str(connections), "--bulk-ids", str(BULK_IDS)], {}, seconds + 60)
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--train-max-iter", type=int, default=40,
                        help="boosting rounds of the champion whose nowcast the API serves (the endpoints "
                             "measured read its published values, not the model); tests use few")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the API server (e.g. to raise a rate limit)")
    args = parser.parse_args()
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    server_env = dict(kv.split("=", 1) for kv in args.server_env)

    with harness.scratch_database() as url, harness.artifact_store("dir") as store_env, \
            tempfile.TemporaryDirectory(prefix="fairvalue-bench-") as tmp:
        # A real server refuses the development webhook secret; the rate limit stays on (its
        # check is part of every request) but far above what one load generator sends.
        env = {"FAIRVALUE_DATABASE_URL": url, "FAIRVALUE_VAR_DIR": tmp,
               "FAIRVALUE_TRAIN_MAX_ITER": str(args.train_max_iter), "FAIRVALUE_CODE_VERSION": "bench",
               "FAIRVALUE_WEBHOOK_SECRET": secrets.token_hex(16), "FAIRVALUE_RATE_LIMIT_PER_MINUTE": str(10**9),
               **store_env}
        prepare(env)
        wrk_script = None
        if use_wrk:
            wrk_script = Path(tmp) / "bench.lua"
            wrk_script.write_text(WRK_SCRIPT)
        ports = {"bare": harness.free_port(), "api": harness.free_port()}
        servers = []
        try:
            servers.append(start_server("bare_app:app", ports["bare"], env, ROOT / "bench"))
            servers.append(start_server("api.app:app", ports["api"], {**env, **server_env}))
            kinds = {"bare": ports["bare"], "item": ports["api"], "bulk": ports["api"], "bare-bulk": ports["bare"]}
            sizes = {kind: body_bytes(port, kind) for kind, port in kinds.items()}
            for kind, port in kinds.items():  # warm up: connections, caches, the JIT-free Python paths
                load(kind, port, 1, 8, wrk_script)
            runs: dict[str, list[dict]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind, port in kinds.items():
                    runs[kind].append(load(kind, port, args.seconds, args.connections, wrk_script))
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=30)
    report(runs, sizes, args, "wrk" if use_wrk else "bench/loadgen.py")


def body_bytes(port: int, kind: str) -> int:
    """The size of one answer of the endpoint, as the report's context."""
    ids = ",".join(str(i * 97) for i in range(BULK_IDS))
    path = {"bare": "/bare/7804", "item": "/v1/items/7804", "bulk": f"/v1/valuations?ids={ids}",
            "bare-bulk": f"/bare-bulk?ids={ids}"}[kind]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return len(answer.read())


def report(runs: dict[str, list[dict]], sizes: dict[str, int], args, generator: str) -> None:
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in runs.items()}
    print(f"{args.connections} connections, {args.seconds:g} s per run, best of {args.rounds} rounds, "
          f"generator {generator}, cores {os.cpu_count()}")
    print(f"{'endpoint':9} {'bytes':>6} {'req/s':>9} {'x bare':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'non-2xx':>8}")
    bare = best["bare"]["rps"]
    for kind, r in best.items():
        print(f"{kind:9} {sizes[kind]:6d} {r['rps']:9.0f} {r['rps'] / bare:7.2f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['non2xx'] + r['errors']:8d}")
    for kind in ("item", "bulk"):
        r = best[kind]
        print(f"{kind}: {r['rps'] / bare:.2f}x bare [target >= 0.6x: {harness.verdict(r['rps'] >= 0.6 * bare)}], "
              f"p95 {r['p95_ms']:.1f} ms [target <= 10 ms: {harness.verdict(r['p95_ms'] <= 10)}]")
    print(f"bulk: {best['bulk']['rps'] / best['bare-bulk']['rps']:.2f}x a bare endpoint sending a body of its size "
          f"(which itself reaches {best['bare-bulk']['rps'] / bare:.2f}x bare)")
    bad = {k: r["non2xx"] + r["errors"] for k, r in best.items() if r["non2xx"] + r["errors"]}
    if bad:
        print(f"WARNING: non-2xx or failed requests {bad}: rates above are not all valuations")


if __name__ == "__main__":
    main()
