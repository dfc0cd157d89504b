"""A small HTTP/1.1 load generator (asyncio, keep-alive), used by bench/api.py when wrk is
not installed. One process, `--connections` concurrent connections, for `--seconds`; prints
one JSON line: requests, seconds, p50/p95/p99 latency in ms, errors, non-2xx."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlparse


def path_for(kind: str, rng: random.Random, bulk_ids: int) -> str:
    if kind == "bulk":
        return "/v1/valuations?ids=" + ",".join(str(rng.randint(0, 9999)) for _ in range(bulk_ids))
    if kind == "item":
        return f"/v1/items/{rng.randint(0, 9999)}"
    return f"/bare/{rng.randint(0, 9999)}"


async def connection(host: str, port: int, kind: str, deadline: float, bulk_ids: int, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
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


async def run(url: str, kind: str, seconds: float, connections: int, bulk_ids: int) -> dict:
    parsed = urlparse(url)
    out = {"latencies": [], "errors": 0, "non2xx": 0}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(connection(parsed.hostname, parsed.port, kind, deadline, bulk_ids, i, out)
                           for i in range(connections)))
    lat = sorted(out["latencies"]) or [float("nan")]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    return {"requests": len(out["latencies"]), "seconds": time.perf_counter() - started, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "errors": out["errors"], "non2xx": out["non2xx"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=("bare", "item", "bulk"), required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bulk-ids", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.kind, args.seconds, args.connections, args.bulk_ids))))


if __name__ == "__main__":
    main()
