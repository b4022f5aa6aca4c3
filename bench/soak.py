"""Soak test, run by hand: spanmeter under good and hostile clients for `--minutes` (default 10),
killed and restarted along the way; then every acknowledged span must be stored, once.

    python bench/soak.py                  # 10 minutes
    python bench/soak.py --minutes 30 --kill-every 60

Three phases against one `spanmeter serve` process (a small write queue, `max_queued_records:
4096`, as when the issue was found):

1. unloaded: 4 clients send 512-span requests back to back for `--phase-seconds`: the accepted
   rate with no refusals;
2. overload: 16 clients do the same: most requests are refused (503 / UNAVAILABLE) and retried;
   the accepted rate should stay near the unloaded one;
3. soak (the rest of the time): 4 good clients (HTTP and gRPC, 1-512 spans per request, paced)
   beside hostile ones: spans with a start time past int64 among good ones, JSON nested 100,000
   deep, garbage protobuf, a request of more records than the queue holds, 12 MB requests, 2,000
   idle HTTP and 500 idle gRPC connections, slowloris heads; /healthz polled throughout. Every
   `--kill-every` seconds the server is killed (SIGKILL, every fourth time SIGTERM) and restarted
   on the same database.

Good clients retry a refused or failed request (same bytes, so the same span ids) until it is
acknowledged. At the end the database is read: `lost` (acknowledged, not stored) and `duplicate
rows` must be 0. Prints spans sent, acknowledged, stored, lost, duplicates, peak RSS, p99, and
the accepted rate under overload next to the unloaded rate. Exit status 1 if anything was lost
or stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPAN_ID_MARK = b"\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5"
RESPONSE_ID_MARK = "chatcmpl-" + "Q" * 24
POISON_SPAN_ID = b"\x0b\xad" * 4


def _kv(key: str, value: str | int) -> KeyValue:
    any_ = AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value)
    return KeyValue(key=key, value=any_)


class Spans:
    """Unique model-call spans, made by patching ids into one serialised template (~1 µs each).

    Span n of this run has span id run(4 bytes) + n(4 bytes) and response id chatcmpl-<run><n>."""

    def __init__(self) -> None:
        self.run = random.getrandbits(32) | 1
        self.next = 1
        start = time.time_ns() - 3600 * 10**9
        self.template = Span(
            trace_id=os.urandom(16), span_id=SPAN_ID_MARK, name="chat gpt-4o-mini", kind=Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=start, end_time_unix_nano=start + 900_000_000,
            attributes=[
                _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                _kv("gen_ai.request.model", "gpt-4o-mini"), _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                _kv("gen_ai.response.id", RESPONSE_ID_MARK), _kv("gen_ai.usage.input_tokens", 1200),
                _kv("gen_ai.usage.output_tokens", 300), _kv("usage.customer.id", "acme"),
            ],
        ).SerializeToString()

    def take(self, count: int, pad: int = 0) -> tuple[list[bytes], list[int]]:
        first, self.next = self.next, self.next + count
        numbers = list(range(first, first + count))
        spans = []
        template = self.template
        if pad:  # a large attribute that is no usage (a prompt)
            span = Span.FromString(template)
            span.attributes.append(_kv("gen_ai.prompt", "p" * pad))
            template = span.SerializeToString()
        for n in numbers:
            span_id = self.run.to_bytes(4, "big") + n.to_bytes(4, "big")
            spans.append(template.replace(SPAN_ID_MARK, span_id).replace(
                RESPONSE_ID_MARK.encode(), f"chatcmpl-{self.run:08x}{n:016d}".encode()))
        return spans, numbers

    def number(self, span_id_hex: str) -> int | None:
        raw = bytes.fromhex(span_id_hex)
        return int.from_bytes(raw[4:], "big") if int.from_bytes(raw[:4], "big") == self.run else None


def request(spans: list[bytes], extra: list[Span] = ()) -> bytes:  # type: ignore[assignment]
    scope = ScopeSpans()
    scope.scope.name = "opentelemetry.instrumentation.openai_v2"
    body = scope.SerializeToString() + b"".join(_field(2, s) for s in spans)
    body += b"".join(_field(2, s.SerializeToString()) for s in extra)
    resource = ResourceSpans()
    resource.resource.attributes.append(_kv("service.name", "soak"))
    return _field(1, resource.SerializeToString() + _field(2, body))


def _field(number: int, payload: bytes) -> bytes:
    tag, size, out = (number << 3) | 2, len(payload), bytearray()
    out.append(tag)
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


@dataclass
class Tally:
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    resent: set[int] = field(default_factory=set)  # spans sent again after an unknown outcome (a kill)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms) of acknowledged attempts
    outcomes: Counter[str] = field(default_factory=Counter)
    health: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    health_failures: int = 0


class Server:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.db = directory / "soak.db"
        self.config = directory / "config.yaml"
        self.config.write_text(json.dumps({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                                                 "http": {"endpoint": f"127.0.0.1:{self.http_port}"}}}},
            "storage": {"sqlite": {"path": str(self.db), "max_queued_records": 4096}},
        }))
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb = 0.0
        self.down: list[tuple[float, float]] = []  # from each kill until ready again

    async def start(self) -> None:
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115, ASYNC230 - the child keeps it
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "spanmeter", "serve", "-c", str(self.config)], stdout=log, stderr=log
        )
        while not await self.ready():
            if self.process.poll() is not None:
                raise SystemExit(f"spanmeter exited with {self.process.returncode}; see {self.directory}/server.log")
            await asyncio.sleep(0.05)

    async def ready(self) -> bool:
        try:
            status, _ = await http("GET", self.http_port, "/readyz", b"", "", timeout=1)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            return False
        return status == 200

    def kill(self, sig: int) -> None:
        assert self.process is not None
        self.killed_at = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(60)

    async def restart(self, sig: int) -> None:
        self.kill(sig)
        await self.start()
        self.down.append((self.killed_at, time.monotonic()))

    def overlaps_restart(self, sent_at: float, ms: float) -> bool:
        return any(sent_at < up and sent_at + ms / 1000 > down for down, up in self.down)

    async def sample_rss(self) -> None:
        while True:
            if self.process is not None and self.process.poll() is None:
                try:
                    for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
                except OSError:
                    pass
            await asyncio.sleep(0.25)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http(method: str, port: int, path: str, body: bytes, content_type: str, timeout: float = 60) -> tuple[int, bytes]:
    """One request on its own connection: (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lower = raw.lower()
        at = lower.find(b"content-length:")
        length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
        return int(raw[9:12]), await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()


class Client:
    """A good client: sends a body until it is acknowledged (same bytes: same span ids)."""

    def __init__(self, server: Server, tally: Tally, transport: str) -> None:
        self.server, self.tally, self.transport = server, tally, transport
        self.channel: grpc.aio.Channel | None = None

    async def send_once(self, body: bytes) -> str:
        """'ok', 'refused' (a 503 / UNAVAILABLE: not stored) or 'unknown' (the server went away)."""
        if self.transport == "http":
            try:
                status, _ = await http("POST", self.server.http_port, "/v1/traces", body, "application/x-protobuf")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                return "unknown"
            self.tally.outcomes[f"http {status}"] += 1
            return "ok" if status == 200 else "refused" if status == 503 else f"http {status}"
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(
                f"127.0.0.1:{self.server.grpc_port}", options=[("grpc.max_send_message_length", 64 << 20)])
        try:
            await self.channel.unary_unary(EXPORT)(body, timeout=60)
        except grpc.aio.AioRpcError as error:
            self.tally.outcomes[f"grpc {error.code().name}"] += 1
            if error.code() == grpc.StatusCode.UNAVAILABLE and "overloaded" in (error.details() or ""):
                return "refused"
            return "unknown" if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                                 grpc.StatusCode.CANCELLED) else f"grpc {error.code().name}"
        self.tally.outcomes["grpc OK"] += 1
        return "ok"

    async def deliver(self, body: bytes, numbers: list[int], retry_pause: float = 0.2) -> None:
        self.tally.sent.update(numbers)
        unknown = False
        while True:
            started = time.monotonic()
            outcome = await self.send_once(body)
            if outcome == "ok":
                self.tally.latencies.append((started, (time.monotonic() - started) * 1000))
                self.tally.acked.update(numbers)
                return
            if outcome not in ("refused", "unknown"):
                raise SystemExit(f"a good request was answered {outcome}")
            if unknown:
                self.tally.resent.update(numbers)
            unknown = outcome == "unknown"
            await asyncio.sleep(retry_pause * (0.5 + random.random()))


async def throughput(server: Server, spans: Spans, tally: Tally, clients: int, seconds: float) -> float:
    """Acknowledged spans/s of `clients` sending 512-span requests back to back."""
    deadline = time.monotonic() + seconds
    accepted = 0

    async def worker(n: int) -> None:
        nonlocal accepted
        client = Client(server, tally, "http" if n % 2 else "grpc")
        while time.monotonic() < deadline:
            batch, numbers = spans.take(512)
            await client.deliver(request(batch), numbers, retry_pause=0.05)
            if time.monotonic() <= deadline:
                accepted += len(numbers)

    began = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    return accepted / min(seconds, time.monotonic() - began)


async def good_clients(server: Server, spans: Spans, tally: Tally, until: float) -> None:
    async def worker(transport: str) -> None:
        client = Client(server, tally, transport)
        while time.monotonic() < until:
            batch, numbers = spans.take(random.choice((1, 1, 10, 100, 512)))
            await client.deliver(request(batch), numbers)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(t) for t in ("http", "http", "grpc", "grpc")))


async def hostile_clients(server: Server, spans: Spans, tally: Tally, until: float) -> None:
    poison = Span(trace_id=os.urandom(16), span_id=POISON_SPAN_ID, name="poison", start_time_unix_nano=2**63,
                  attributes=[_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                              _kv("gen_ai.usage.input_tokens", 1)])
    events = Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="events", start_time_unix_nano=time.time_ns())
    for _ in range(5000):
        events.events.add(name="e", attributes=[_kv("usage.event.name", "x")])
    too_many = request([], [events])
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def every(seconds: float, action: object) -> None:
        while time.monotonic() < until:
            try:
                await action()  # type: ignore[operator]
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, grpc.aio.AioRpcError):
                tally.outcomes["hostile: server away"] += 1
            await asyncio.sleep(seconds)

    async def poisoned() -> None:  # good spans beside one the store cannot hold: only that one is refused
        batch, numbers = spans.take(20)
        await Client(server, tally, "http").deliver(request(batch, [poison]), numbers)

    async def answered(name: str, method: str, path: str, body: bytes, content_type: str) -> None:
        status, _ = await http(method, server.http_port, path, body, content_type)
        tally.outcomes[f"{name} {status}"] += 1

    async def garbage_grpc() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            try:
                await channel.unary_unary(EXPORT)(b"\xff\xff garbage", timeout=10)
            except grpc.aio.AioRpcError as error:
                tally.outcomes[f"garbage grpc {error.code().name}"] += 1

    async def large() -> None:  # ~12 MB: 2,000 spans with a 6 kB prompt each
        batch, numbers = spans.take(2000, pad=6000)
        await Client(server, tally, "http").deliver(request(batch), numbers, retry_pause=1.0)

    async def idle(port: int, count: int) -> None:  # connections that never send a byte, reopened when closed
        async def one() -> None:
            while time.monotonic() < until:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    await asyncio.wait_for(reader.read(), max(until - time.monotonic(), 0.1))
                    writer.close()
                    tally.outcomes["idle connection closed by server"] += 1
                except (TimeoutError, OSError):
                    pass
                await asyncio.sleep(5 * random.random())  # reopened: idle clients, not a connection flood

        await asyncio.gather(*(one() for _ in range(count)))

    async def slowloris() -> None:
        async def one() -> None:
            while time.monotonic() < until:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
                    for byte in b"POST /v1/traces HTTP/1.1\r\nhost: slow\r\n":
                        writer.write(bytes([byte]))
                        await asyncio.sleep(1)
                        if reader.at_eof() or writer.is_closing():
                            break
                    writer.close()
                except OSError:
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one() for _ in range(20)))

    async def health() -> None:
        started = time.monotonic()
        try:
            status, _ = await http("GET", server.http_port, "/healthz", b"", "", timeout=30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            tally.health_failures += 1  # a restart: counted apart
            return
        if status == 200:
            tally.health.append((started, (time.monotonic() - started) * 1000))

    await asyncio.gather(
        every(1.0, poisoned),
        every(3.0, lambda: answered("deep json", "POST", "/v1/traces", deep, "application/json")),
        every(10.0, lambda: answered("too many records", "POST", "/v1/traces", too_many, "application/x-protobuf")),
        every(3.0, garbage_grpc),
        every(30.0, large),
        every(0.2, health),
        idle(server.http_port, 2000),
        idle(server.grpc_port, 500),
        slowloris(),
    )


async def killer(server: Server, every: float, until: float) -> int:
    kills = 0
    while time.monotonic() + every < until:
        await asyncio.sleep(every * (0.75 + random.random() / 2))
        kills += 1
        await server.restart(signal.SIGTERM if kills % 4 == 0 else signal.SIGKILL)
    return kills


def stored(server: Server, spans: Spans) -> tuple[Counter[int], int]:
    """How many rows each span of this run has, and the rows of the poison span (must be 0)."""
    rows: Counter[int] = Counter()
    with sqlite3.connect(server.db) as conn:
        for (span_id,) in conn.execute("SELECT span_id FROM records"):
            number = spans.number(span_id) if span_id else None
            if number is not None:
                rows[number] += 1
        poison = conn.execute("SELECT COUNT(*) FROM records WHERE span_id = ?", [POISON_SPAN_ID.hex()]).fetchone()[0]
    return rows, poison


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def main(args: argparse.Namespace) -> int:
    directory = Path(tempfile.mkdtemp(prefix="spanmeter-soak-"))
    server, spans, tally = Server(directory), Spans(), Tally()
    sampler = asyncio.create_task(server.sample_rss())
    began = time.monotonic()
    await server.start()
    print(f"spanmeter on :{server.http_port} (HTTP) :{server.grpc_port} (gRPC), files in {directory}", flush=True)
    unloaded = await throughput(server, spans, tally, 4, args.phase_seconds)
    print(f"unloaded: {unloaded:,.0f} spans/s accepted (4 clients)", flush=True)
    overload_outcomes = Counter(tally.outcomes)
    overloaded = await throughput(server, spans, tally, 16, args.phase_seconds)
    refused = sum((tally.outcomes - overload_outcomes)[k] for k in ("http 503", "grpc UNAVAILABLE"))
    print(f"overload: {overloaded:,.0f} spans/s accepted (16 clients; {refused:,} requests refused and retried)",
          flush=True)
    if args.phases_only:  # e.g. against an older version, whose answers to hostile clients differ
        server.kill(signal.SIGTERM)
        sampler.cancel()
        print(f"accepted rate under overload: {overloaded / unloaded:.0%} of the unloaded rate")
        return 0
    phase_latencies = len(tally.latencies)
    tally.health.clear()
    until = began + args.minutes * 60
    print(f"soak: good and hostile clients, a kill every ~{args.kill_every:.0f} s, until {args.minutes} min", flush=True)
    soak = asyncio.gather(good_clients(server, spans, tally, until), hostile_clients(server, spans, tally, until))
    kills = await killer(server, args.kill_every, until)
    await soak
    server.kill(signal.SIGTERM)
    sampler.cancel()

    rows, poison_rows = stored(server, spans)
    lost = tally.acked - set(rows)
    duplicates = sum(n - 1 for n in rows.values() if n > 1)
    # Answers that overlapped a kill and restart waited for it: counted apart.
    soak_latencies = [ms for at, ms in tally.latencies[phase_latencies:] if not server.overlaps_restart(at, ms)]
    health = [ms for at, ms in tally.health if not server.overlaps_restart(at, ms)]
    print()
    print(f"ran {(time.monotonic() - began) / 60:.1f} min; {kills} kills and restarts "
          f"(kill to ready: max {max((up - down for down, up in server.down), default=0):.1f} s)")
    print(f"spans sent          {len(tally.sent):>12,}")
    print(f"acknowledged        {len(tally.acked):>12,}")
    print(f"stored              {len(rows):>12,}   (of this run's spans; "
          f"{len(set(rows) - tally.acked):,} stored but never acknowledged: killed before the answer)")
    print(f"re-sent after a kill{len(tally.resent):>12,}   (outcome unknown; their duplicates are dropped by key)")
    print(f"duplicate rows      {duplicates:>12,}   (must be 0)")
    print(f"lost                {len(lost):>12,}   (acknowledged, not stored: must be 0)")
    print(f"poison rows         {poison_rows:>12,}")
    print(f"peak RSS            {server.peak_rss_mb:>12,.0f} MB")
    print(f"p99 good requests   {percentile(soak_latencies, 99):>12,.1f} ms   (soak phase, restarts aside; p50 "
          f"{percentile(soak_latencies, 50):.1f} ms, {len(soak_latencies):,} requests)")
    print(f"/healthz p99        {percentile(health, 99):>12,.1f} ms   (max {max(health, default=0):,.0f} ms;"
          f" {tally.health_failures} unanswered during restarts)")
    print(f"accepted rate       {overloaded:>12,.0f} spans/s under overload (16 clients) vs {unloaded:,.0f} unloaded "
          f"(4 clients): {overloaded / unloaded:.0%}")
    print("answers:", ", ".join(f"{k} {v:,}" for k, v in sorted(tally.outcomes.items())))
    return 1 if lost or duplicates or poison_rows else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="whole run, phases included (default 10)")
    parser.add_argument("--phase-seconds", type=float, default=30.0, help="unloaded and overload phases (default 30)")
    parser.add_argument("--phases-only", action="store_true", help="the unloaded and overload phases, no soak")
    parser.add_argument("--kill-every", type=float, default=90.0, help="seconds between kills, about (default 90)")
    sys.exit(asyncio.run(main(parser.parse_args())))
