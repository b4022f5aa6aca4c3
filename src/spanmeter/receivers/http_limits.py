"""Limits on OTLP/HTTP connections, so that clients that open connections and send nothing (or
send a byte now and then) cannot take every file descriptor and lock everyone else out.

uvicorn closes a connection idle *between* requests (`timeout_keep_alive`) but never one that
has sent nothing yet, and has no read timeouts. `guarded` wraps the HTTP protocol uvicorn would
use (httptools when installed, else h11) with:

- a connection limit: past `max_connections` open connections, a new one is closed at once
  (its descriptor is back before it is used);
- a header timeout: a request's head (from the connection's opening, or from the first byte of a
  later request on it) must arrive within `header_timeout` seconds;
- a body timeout: its whole body within `body_timeout` seconds of the same start.

A connection past either timeout is closed. Costs one timer per request (~2 µs).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float


def guarded(limits: ConnectionLimits, base: type[asyncio.Protocol] = AutoHTTPProtocol) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class `base` with the limits above (pass it as uvicorn's `http`)."""
    protocol: Any = base  # uvicorn's protocols have no common typed base with these attributes

    class Guarded(protocol):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None
        _body_due = False  # the head arrived in time; the deadline now is the body's

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first byte of another request on this connection
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._body_due = False
            self._request = self.cycle  # the request before this one (or None): a new one is due
            self._deadline = self.loop.call_later(limits.header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            cycle = self.cycle
            if cycle is None or cycle is self._request:  # no request head yet
                self.transport.close()
            elif cycle.more_body:  # the head came; the body is still coming
                if self._body_due:
                    self.transport.close()
                else:
                    self._body_due = True
                    remaining = max(limits.body_timeout - limits.header_timeout, 0.0)
                    self._deadline = self.loop.call_later(remaining, self._expired)
            # else: the request is in and being answered

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
