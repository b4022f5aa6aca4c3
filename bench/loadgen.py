"""The load generator: pre-serialised OTLP bodies, sent with as little client work as possible.

gRPC: one grpc.aio channel, the generic unary call on raw bytes (no serializer, no deserializer).
HTTP: raw asyncio keep-alive connections (one per in-flight request); the request head is a
formatted bytes string, the response is read by Content-Length.

`drive` sends a warm-up prefix untimed, then the measured bodies with `concurrency` requests in
flight, recording each request's latency, and stops early at `max_seconds`.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import grpc

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

# send(body) -> (ok, response_body_length, error name)
Send = Callable[[bytes], Awaitable[tuple[bool, int, str]]]


@dataclass
class LoadResult:
    sent: int = 0  # measured requests answered (ok or not)
    ok: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    done_s: list[float] = field(default_factory=list)  # when each measured request was answered, from the start
    errors: Counter[str] = field(default_factory=Counter)
    non_empty_responses: int = 0  # responses with a body: partial success or an error status
    warmup_ok: int = 0
    timed_out: bool = False
    client_cpu_s: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    send: Send,
    bodies: list[bytes],
    warmup: int,
    concurrency: int,
    max_seconds: float,
    on_measure_start: Callable[[], None] | None = None,
    rate: float | None = None,
) -> LoadResult:
    """`rate` (requests/s) paces the measured phase: request i is not sent before start + i/rate."""
    result = LoadResult()

    measure_start = 0.0

    async def run(items: list[bytes], timed: bool, deadline: float) -> None:
        position = 0
        paced_from = time.perf_counter()

        async def worker() -> None:
            nonlocal position
            latencies = result.latencies_ms
            while position < len(items):
                if timed and time.perf_counter() > deadline:
                    result.timed_out = True
                    return
                body = items[position]
                position += 1
                if timed and rate:
                    due = paced_from + (position - 1) / rate
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                started = time.perf_counter()
                ok, size, error = await send(body)
                if not timed:
                    result.warmup_ok += ok
                    continue
                answered = time.perf_counter()
                latencies.append((answered - started) * 1000)
                result.done_s.append(answered - measure_start)
                result.sent += 1
                if ok:
                    result.ok += 1
                else:
                    result.errors[error] += 1
                if size:
                    result.non_empty_responses += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run(bodies[:warmup], False, float("inf"))
    if on_measure_start is not None:
        on_measure_start()
    cpu0 = _cpu()
    started = measure_start = time.perf_counter()
    await run(bodies[warmup:], True, started + max_seconds)
    result.elapsed = time.perf_counter() - started
    result.client_cpu_s = _cpu() - cpu0
    return result


class GrpcClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        self.call = self.channel.unary_unary(
            EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )

    async def __aenter__(self) -> Self:
        await asyncio.wait_for(self.channel.channel_ready(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    async def send(self, body: bytes) -> tuple[bool, int, str]:
        try:
            response = await self.call(body, timeout=60)
        except grpc.aio.AioRpcError as error:
            return False, 0, f"grpc {error.code().name}"
        return True, len(response), ""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


class HttpClient:
    """Raw HTTP/1.1 keep-alive client for POST /v1/traces; a pool of connections, one per in-flight request."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.head = f"POST /v1/traces HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: "
        self.head_bytes = self.head.encode()
        self.idle: list[_Conn] = []
        self.all: list[_Conn] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.all:
            conn.writer.close()
        for conn in self.all:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        conn = _Conn(reader, writer)
        self.all.append(conn)
        return conn

    async def send(self, body: bytes) -> tuple[bool, int, str]:
        conn = self.idle.pop() if self.idle else await self._connect()
        head = self.head_bytes + b"%d\r\n\r\n" % len(body)
        try:
            if len(body) < 65536:
                conn.writer.write(head + body)
            else:
                conn.writer.write(head)
                conn.writer.write(body)
            raw = await conn.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            lower = raw.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
            if length:
                await conn.reader.readexactly(length)
            if b"connection: close" in lower:
                conn.writer.close()
                self.all.remove(conn)
            else:
                self.idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            conn.writer.close()
            if conn in self.all:
                self.all.remove(conn)
            return False, 0, f"http {type(error).__name__}"
        if status != 200:
            return False, length, f"http {status}"
        return True, length, ""
