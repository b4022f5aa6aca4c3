"""A port another process holds: `spanmeter serve` refuses to start with one line naming the
port and the config key, and exits non-zero (gRPC used to share the port silently)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_crash import free_port, start_server


def serve_once(tmp_path: Path, grpc_port: int, http_port: int) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "second.yaml"
    config.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "storage": {"sqlite": {"path": str(tmp_path / "second.db")}},
    }))
    # A second collector that started would run until killed: the timeout fails the test then.
    return subprocess.run([sys.executable, "-m", "spanmeter", "serve", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("shared", ["grpc", "http"])
def test_a_second_collector_on_a_busy_port_fails_with_one_clear_line(tmp_path: Path, shared: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    first = start_server(tmp_path, http_port, grpc_port)
    try:
        second = serve_once(
            tmp_path,
            grpc_port if shared == "grpc" else free_port(),
            http_port if shared == "http" else free_port(),
        )
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    port = grpc_port if shared == "grpc" else http_port
    protocol = "OTLP/gRPC" if shared == "grpc" else "OTLP/HTTP"
    assert second.returncode == 1, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last == (
        f"Error: cannot listen for {protocol} on 127.0.0.1:{port}: port {port} is already in use by another "
        f"process (another spanmeter?); change receivers::otlp::protocols::{shared}::endpoint in the config (-c FILE)"
    )
    assert "Traceback" not in second.stderr and "excepthook" not in second.stderr
    assert "Failed to add port" not in second.stderr  # grpc's own C-level log line
