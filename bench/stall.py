"""Large requests beside small ones: how long /healthz waits while spanmeter converts big requests,
and how much memory they take.

    python bench/stall.py                      # one request of 40,000 spans (~15 MB), then 16 at once
    python bench/stall.py --spans 50000 --parallel 4

Starts `spanmeter serve` (default config, a temp database), sends the large request(s) over HTTP
while a second client asks /healthz every 10 ms, and prints the longest /healthz answer, the
server's RSS before and at its peak, and each large request's status (200, or 503 past
receivers::otlp::max_in_flight_bytes: a retryable refusal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from soak import Server, Spans, http, request


async def main(args: argparse.Namespace) -> None:
    server = Server(Path(tempfile.mkdtemp(prefix="spanmeter-stall-")))
    server.config.write_text(json.dumps({**json.loads(server.config.read_text()), "storage": {"sqlite": {
        "path": str(server.db)}}}))
    sampler = asyncio.create_task(server.sample_rss())
    await server.start()
    try:
        spans = Spans()
        for parallel in (1, args.parallel):
            bodies = [request(spans.take(args.spans)[0]) for _ in range(parallel)]
            await asyncio.sleep(1)
            server.peak_rss_mb = 0.0
            await asyncio.sleep(0.5)
            before = server.peak_rss_mb
            worst = 0.0
            done = asyncio.Event()

            async def health(done: asyncio.Event = done) -> None:
                nonlocal worst
                while not done.is_set():
                    started = time.perf_counter()
                    await http("GET", server.http_port, "/healthz", b"", "", timeout=120)
                    worst = max(worst, time.perf_counter() - started)
                    await asyncio.sleep(0.01)

            checker = asyncio.create_task(health())
            started = time.perf_counter()
            answers = await asyncio.gather(*(
                http("POST", server.http_port, "/v1/traces", body, "application/x-protobuf", timeout=300) for body in bodies
            ))
            elapsed = time.perf_counter() - started
            done.set()
            await checker
            statuses = sorted(status for status, _ in answers)
            print(f"{parallel} x {args.spans:,} spans ({len(bodies[0]) / 1e6:.1f} MB each): answered in {elapsed:.1f} s,"
                  f" statuses {statuses}; /healthz waited {worst * 1000:.0f} ms at most;"
                  f" RSS {before:.0f} MB before, {server.peak_rss_mb:.0f} MB at peak", flush=True)
    finally:
        server.kill(15)
        sampler.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=40_000)
    parser.add_argument("--parallel", type=int, default=16)
    asyncio.run(main(parser.parse_args()))
