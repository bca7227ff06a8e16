"""An aiohttp load generator, used when wrk is not installed: POST one body over N connections for S seconds.

    python benchmarks/_load.py URL BODY_FILE CONTENT_TYPE CONNECTIONS SECONDS   (prints a JSON object)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp


async def main(url: str, body: bytes, ctype: str, connections: int, seconds: float) -> dict[str, object]:
    """Run the load and return the wrk-like figures."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": ctype}) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    secs = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "tool": "aiohttp", "requests": n, "errors": errors, "seconds": secs, "rps": (n - errors) / secs,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
    }


if __name__ == "__main__":
    url, body_file, ctype, connections, seconds = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(url, Path(body_file).read_bytes(), ctype, int(connections), float(seconds)))))
