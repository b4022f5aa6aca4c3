"""The bare-minimum OTLP trace receivers that spanmeter is measured against.

    python bench/baseline.py --mode bare --grpc-port P --http-port Q --db FILE [--http-server raw|uvicorn]
                             [--loop asyncio|uvloop]

One process, one asyncio event loop, both protocols (like spanmeter). Modes:

- `noop`    parse the request (ExportTraceServiceRequest.ParseFromString) and answer.
- `extract` parse, then pull the GenAI attributes of every span out in a loop (no storage).
- `bare`    parse, extract, and `INSERT OR IGNORE` the rows into SQLite in one transaction per
            request (WAL, synchronous=NORMAL, a UNIQUE index on `trace_id:span_id`), then answer.
            This is "the bare minimum" of issue 5: no pricing, no conversion rules,
            no cross-request batching; the insert runs on the event loop (it blocks it, as the
            simplest receiver would).

gRPC: a grpc.aio server with a generic handler for `TraceService/Export` (raw bytes in, an empty
ExportTraceServiceResponse out). HTTP, `POST /v1/traces` with `application/x-protobuf`:
- `raw` (default): an asyncio.Protocol HTTP/1.1 server: keep-alive, pipelining, Content-Length
  bodies (chunked bodies get 411), 404/405/415/400 for wrong path/method/type/body. Minimal but
  correct for what OTLP exporters send.
- `uvicorn`: the same handler as a plain ASGI app on uvicorn (the server spanmeter uses, with
  httptools).
`--loop`: the event loop, asyncio's own by default (the bare minimum of issue 5); uvloop, which
`spanmeter serve` uses where installed, to compare like with like.
Stops cleanly on SIGTERM/SIGINT (closes listeners, commits, exits 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MAX_BODY = 16 * 1024 * 1024

# Span attributes extracted, with their column index in the row (see SCHEMA).
_STR, _INT = 0, 1
SPAN_FIELDS = {
    "gen_ai.operation.name": (3, _STR),
    "gen_ai.provider.name": (4, _STR),
    "gen_ai.request.model": (5, _STR),
    "gen_ai.response.model": (6, _STR),
    "gen_ai.usage.input_tokens": (7, _INT),
    "gen_ai.usage.output_tokens": (8, _INT),
    "gen_ai.usage.cache_read.input_tokens": (9, _INT),
    "gen_ai.usage.cache_creation.input_tokens": (10, _INT),
    "gen_ai.response.id": (11, _STR),
}
COLUMNS = (
    "key",
    "trace_id",
    "span_id",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "response_id",
    "customer_id",
    "service_name",
    "start_ns",
    "end_ns",
)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spans (seq INTEGER PRIMARY KEY, "
    + ", ".join(f"{c} {'INTEGER' if c.endswith(('tokens', '_ns')) else 'TEXT'}" for c in COLUMNS)
    + ")",
    "CREATE UNIQUE INDEX IF NOT EXISTS spans_key ON spans (key)",
)
INSERT = f"INSERT OR IGNORE INTO spans ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def parse(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def extract(request: ExportTraceServiceRequest) -> list[tuple[object, ...]]:
    rows = []
    fields = SPAN_FIELDS
    for resource_spans in request.resource_spans:
        service = customer = None
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
            elif kv.key == "usage.customer.id":
                customer = kv.value.string_value
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                row: list[object] = [None] * 16
                for kv in span.attributes:
                    found = fields.get(kv.key)
                    if found is not None:
                        row[found[0]] = kv.value.int_value if found[1] else kv.value.string_value
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                row[0] = f"{trace_id}:{span_id}"
                row[1] = trace_id
                row[2] = span_id
                row[12] = customer
                row[13] = service
                row[14] = span.start_time_unix_nano
                row[15] = span.end_time_unix_nano
                rows.append(tuple(row))
    return rows


class Handler:
    """body bytes → None (accepted) or raises ValueError (malformed)."""

    def __init__(self, mode: str, db: str | None) -> None:
        self.mode = mode
        self.conn: sqlite3.Connection | None = None
        if mode == "bare":
            if db is None:
                raise SystemExit("--db is required in bare mode")
            self.conn = sqlite3.connect(db, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in SCHEMA:
                self.conn.execute(statement)

    def __call__(self, body: bytes) -> None:
        try:
            request = parse(body)
        except DecodeError as error:
            raise ValueError(f"invalid ExportTraceServiceRequest: {error}") from None
        if self.mode == "noop":
            return
        rows = extract(request)
        if self.conn is None:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# --- gRPC ---------------------------------------------------------------------------------------
def grpc_server(handle: Callable[[bytes], None], port: int) -> grpc.aio.Server:
    async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            handle(body)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return b""  # an empty ExportTraceServiceResponse

    method = grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)
    generic = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": method}
    )
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", MAX_BODY), ("grpc.so_reuseport", 0)]
    )
    server.add_generic_rpc_handlers((generic,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


# --- HTTP: raw asyncio ---------------------------------------------------------------------------
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
}


def _response(status: int, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode()


_OK = _response(200)


class RawHTTP(asyncio.Protocol):
    def __init__(self, handle: Callable[[bytes], None]) -> None:
        self.handle = handle
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self._fail(400)
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            try:
                method, path, version = lines[0].split(" ")
            except ValueError:
                return self._fail(400)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                return self._fail(411)
            length = headers.get("content-length", "0")
            if not length.isdigit():
                return self._fail(400)
            size = int(length)
            if size > MAX_BODY:
                return self._fail(413)
            if len(self.buffer) < end + 4 + size:
                return  # wait for the rest of the body
            body = bytes(self.buffer[end + 4 : end + 4 + size])
            del self.buffer[: end + 4 + size]
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            status = self._status(method, path, headers, body)
            self.transport.write(_OK if status == 200 and not close else _response(status, close))
            if close:
                self.transport.close()
                self.transport = None

    def _status(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        if path.split("?")[0] != "/v1/traces":
            return 404
        if method != "POST":
            return 405
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-protobuf":
            return 415
        if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
            return 415
        try:
            self.handle(body)
        except ValueError:
            return 400
        return 200

    def _fail(self, status: int) -> None:
        if self.transport is not None:
            self.transport.write(_response(status, close=True))
            self.transport.close()
            self.transport = None


# --- HTTP: ASGI on uvicorn -----------------------------------------------------------------------
def asgi_app(handle: Callable[[bytes], None]):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        status = 200
        if scope["path"] != "/v1/traces":
            status = 404
        elif scope["method"] != "POST":
            status = 405
        else:
            ctype = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/x-protobuf":
                status = 415
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if status == 200:
            try:
                handle(b"".join(chunks))
            except ValueError:
                status = 400
        headers = [(b"content-type", b"application/x-protobuf"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


async def serve(args: argparse.Namespace) -> None:
    handle = Handler(args.mode, args.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gserver = grpc_server(handle, args.grpc_port)
    await gserver.start()
    uv = None
    uv_task = None
    hserver = None
    if args.http_server == "raw":
        hserver = await loop.create_server(
            lambda: RawHTTP(handle), "127.0.0.1", args.http_port, reuse_address=True
        )
    else:
        import contextlib

        import uvicorn

        class _Uvicorn(uvicorn.Server):  # the signals are ours, not uvicorn's
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def]
                yield

        config = uvicorn.Config(
            asgi_app(handle),
            host="127.0.0.1",
            port=args.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        uv = _Uvicorn(config)
        uv_task = asyncio.create_task(uv.serve())
    print(
        f"baseline {args.mode} ready: grpc 127.0.0.1:{args.grpc_port} http 127.0.0.1:{args.http_port}",
        flush=True,
    )
    await stop.wait()
    if hserver is not None:
        hserver.close()
    if uv is not None and uv_task is not None:
        uv.should_exit = True
        await uv_task
    await gserver.stop(5)
    handle.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("noop", "extract", "bare"), default="bare")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--db", help="SQLite file (bare mode)")
    parser.add_argument("--http-server", choices=("raw", "uvicorn"), default="raw")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
