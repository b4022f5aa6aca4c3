"""`spanmeter serve` keeps what start-up built out of the garbage collector's full passes.

A full pass walks every tracked object; FastAPI's and genai-prices' pydantic validators made one
take 40-60 ms, every few seconds under load: the p99 export latency (bench/README.md).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from spanmeter.app import Collector
from tests.conftest import make_config


def tracked_by_collections(obj: object) -> bool:
    # gc.get_objects() lists generations 0-2: a frozen object is in none of them.
    return any(o is obj for o in gc.get_objects())


def test_serve_freezes_startup_objects_and_collects_new_garbage(tmp_path: Path) -> None:
    collector = Collector(make_config(tmp_path))

    async def serve_briefly() -> tuple[bool, bool, bool]:
        stop = asyncio.Event()
        serving = asyncio.create_task(collector.run_until(stop))
        for _ in range(1000):  # until started (10 s at most)
            if gc.get_freeze_count() or serving.done() or collector.http_port:
                break
            await asyncio.sleep(0.01)
        frozen = not tracked_by_collections(collector) and not tracked_by_collections(collector.store)
        # Garbage made after start-up is still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        collected_before = tracked_by_collections(cycle)
        del cycle
        unreachable = gc.collect()
        stop.set()
        await serving
        return frozen, collected_before, unreachable > 0

    assert tracked_by_collections(collector)
    try:
        frozen, new_was_tracked, new_collected = asyncio.run(serve_briefly())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert frozen, "objects built at start-up are still walked by every full collection"
    assert new_was_tracked and new_collected
