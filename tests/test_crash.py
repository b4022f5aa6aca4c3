"""Durability: every record acknowledged before a `kill -9` is in the database after restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from spanmeter.store.base import RecordFilter
from spanmeter.store.sqlite import SQLiteStore
from tests.otlp_helpers import json_request, llm_raw_attrs, raw_span


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    tmp_path: Path,
    port: int,
    grpc_port: int | None = None,
    service: dict[str, object] | None = None,
    exporters: dict[str, object] | None = None,
    stderr: int = subprocess.PIPE,
    storage: dict[str, object] | None = None,
) -> subprocess.Popen[bytes]:
    """`spanmeter serve` in a process of its own (HTTP on `port`, gRPC on `grpc_port` or off),
    returned once /readyz answers; its stderr is piped (or where `stderr` says). Its database is
    tmp_path/crash.db, or what `storage` says."""
    config = tmp_path / f"config-{port}.yaml"
    grpc = None if grpc_port is None else {"endpoint": f"127.0.0.1:{grpc_port}"}
    config.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": grpc, "http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "storage": storage or {"sqlite": {"path": str(tmp_path / "crash.db")}},
        **({"service": service} if service else {}),
        **({"exporters": exporters} if exporters else {}),
    }))
    proc = subprocess.Popen([sys.executable, "-m", "spanmeter", "serve", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 60  # a loaded machine (2 cores, several suites) takes ~30 s to import and start
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"spanmeter did not start: {proc.stderr.read() if proc.stderr else ''!r}")


def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    proc = start_server(tmp_path, port)
    acknowledged: list[str] = []
    stop = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            batch = 0
            while not stop.is_set():
                ids = [(worker << 40) | (batch << 8) | n for n in range(1, 21)]
                body = json_request([raw_span(span_id, llm_raw_attrs()) for span_id in ids])
                try:
                    response = client.post(f"http://127.0.0.1:{port}/v1/traces", content=body,
                                           headers={"content-type": "application/json"})
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if response.status_code == 200:
                    acknowledged.extend(f"{span_id:016x}" for span_id in ids)
                batch += 1

    senders = [threading.Thread(target=send, args=(w,)) for w in range(1, 4)]
    for thread in senders:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for thread in senders:
        thread.join(10)
    assert len(acknowledged) >= 2000

    # restart on the same database: recovery from the WAL, then everything acknowledged is there
    proc = start_server(tmp_path, port)
    try:
        stored = {r.span_id for r in SQLiteStore(tmp_path / "crash.db").recent(RecordFilter(), 1_000_000)}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged records lost"
