"""The event loop `spanmeter serve` runs on: uvloop when installed, else asyncio's own.

Both receivers, the API and the exporters' scheduling share one loop. At one span per request much
of a request's CPU is the loop's own work (the gRPC core's completions, uvicorn's protocol callbacks,
the writer's wake-ups): on uvloop, 14-17 % more such requests per second on one core here
(bench/README.md); at 512 spans per request no difference. `service::event_loop` chooses.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
from typing import Final, Literal

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
UVLOOP_MISSING: Final = (
    "uvloop is not installed (it has no Windows build): pip install uvloop, or choose auto or asyncio"
)


def uses_uvloop(choice: EventLoopChoice) -> bool:
    """Whether `choice` runs on uvloop here; ValueError when it asks for uvloop and there is none."""
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ValueError(UVLOOP_MISSING)
    return choice != "asyncio" and installed


def new_event_loop(choice: EventLoopChoice = "auto") -> asyncio.AbstractEventLoop:
    if uses_uvloop(choice):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """For the start-up log: 'uvloop 0.23.0' or 'asyncio'."""
    if type(loop).__module__.split(".")[0] == "uvloop":
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return "asyncio"
