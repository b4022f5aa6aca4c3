"""A whole collector (receivers, store, exporters) on a background thread's event loop.

For code that has a collector beside it in one process: `spanmeter demo` and the tests. The loop is
the one `spanmeter serve` runs on (`service::event_loop`); leaving the block stops the collector
the way `serve` does at SIGTERM (stop accepting, finish in-flight writes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from spanmeter.app import Collector
from spanmeter.config import Config
from spanmeter.event_loop import new_event_loop

T = TypeVar("T")


class BackgroundCollector:
    def __init__(self, collector: Collector, loop: asyncio.AbstractEventLoop) -> None:
        self.collector = collector
        self.loop = loop

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.collector.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.http_port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the collector's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def background_collector(config: Config) -> Iterator[BackgroundCollector]:
    loop = new_event_loop(config.service.event_loop)
    thread = threading.Thread(target=loop.run_forever, name="collector-loop", daemon=True)
    thread.start()
    collector = Collector(config)
    try:
        asyncio.run_coroutine_threadsafe(collector.start(), loop).result(30)
        yield BackgroundCollector(collector, loop)
    finally:
        asyncio.run_coroutine_threadsafe(collector.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
