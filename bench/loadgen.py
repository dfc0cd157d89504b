"""A small HTTP/1.1 load generator (asyncio, keep-alive): bench/api.py uses it when wrk is not
installed, bench/ingest.py to POST prepared (signed) bodies. One process, `--connections`
concurrent connections, for `--seconds` (and at most once per prepared body); prints one
JSON line: requests, seconds, p50/p95/p99 latency in ms, errors, non-2xx."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlparse


def path_for(kind: str, rng: random.Random, bulk_ids: int) -> str:
    if kind in ("bulk", "bare-bulk"):  # the bare one gets the same query, to read the same request
        path = "/v1/valuations" if kind == "bulk" else "/bare-bulk"
        return path + "?ids=" + ",".join(str(rng.randint(0, 9999)) for _ in range(bulk_ids))
    if kind == "item":
        return f"/v1/items/{rng.randint(0, 9999)}"
    return f"/bare/{rng.randint(0, 9999)}"


def post_request(host: str, spec: dict) -> bytes:
    body = spec["body"].encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    return (f"POST {spec['path']} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def connection(host: str, port: int, kind: str, deadline: float, bulk_ids: int, seed: int, out: dict,
                     posts=None) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            if posts is not None:
                spec = next(posts, None)
                if spec is None:
                    break  # every prepared request is sent: the run is bounded in count too
                request = post_request(host, spec)
            else:
                request = f"GET {path_for(kind, rng, bulk_ids)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - started)
            if not status_line.split(b" ")[1].startswith(b"2"):
                out["non2xx"] += 1
    except (OSError, asyncio.IncompleteReadError, IndexError):
        out["errors"] += 1
    finally:
        writer.close()


async def run(url: str, kind: str, seconds: float, connections: int, bulk_ids: int,
              bodies: str | None = None) -> dict:
    parsed = urlparse(url)
    out = {"latencies": [], "errors": 0, "non2xx": 0}
    posts = None
    if bodies:
        with open(bodies) as fh:
            posts = iter([json.loads(line) for line in fh])
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(connection(parsed.hostname, parsed.port, kind, deadline, bulk_ids, i, out, posts)
                           for i in range(connections)))
    lat = sorted(out["latencies"]) or [float("nan")]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    return {"requests": len(out["latencies"]), "seconds": time.perf_counter() - started, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "errors": out["errors"], "non2xx": out["non2xx"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=("bare", "bare-bulk", "item", "bulk", "post"), required=True)
    parser.add_argument("--bodies", help="JSON lines of {path, body, headers}: POST each once (kind post)")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bulk-ids", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.kind, args.seconds, args.connections, args.bulk_ids,
                                       args.bodies))))


if __name__ == "__main__":
    main()
