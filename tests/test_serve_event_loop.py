"""`spanmeter serve` on either event loop (service::event_loop): uvloop by default where it is
installed, asyncio's own on request; both receivers answer and store on each."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter import event_loop
from spanmeter.errors import ConfigError
from tests.conftest import make_config
from tests.otlp_helpers import llm_spans
from tests.test_crash import free_port, start_server


@pytest.mark.parametrize(("choice", "runs_on"), [("auto", "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_serve_runs_on_the_chosen_loop_and_both_receivers_store(tmp_path: Path, choice: str, runs_on: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = start_server(tmp_path, http_port, grpc_port, service={"event_loop": choice})
    try:
        grpc = GrpcExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
        http = HttpExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
        assert grpc.export(llm_spans(3, customer="grpc")) == SpanExportResult.SUCCESS
        assert http.export(llm_spans(2, customer="http")) == SpanExportResult.SUCCESS
        grpc.shutdown()
        http.shutdown()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert f"event loop: {runs_on}" in stderr.decode()
    with sqlite3.connect(tmp_path / "crash.db") as conn:
        stored = dict(conn.execute("SELECT customer_id, COUNT(*) FROM records GROUP BY customer_id").fetchall())
    assert stored == {"grpc": 3, "http": 2}


def test_asking_for_uvloop_where_it_is_not_installed_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where uvloop has no build (Windows) or was left out: the config check says what to do.
    real_find_spec = event_loop.importlib.util.find_spec
    monkeypatch.setattr(event_loop.importlib.util, "find_spec", lambda name: None if name == "uvloop" else real_find_spec(name))
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, service={"event_loop": "uvloop"})
    assert "service::event_loop: uvloop is not installed" in str(error.value) and "pip install uvloop" in str(error.value)
    # auto falls back to asyncio's own loop, which runs as before
    assert not event_loop.uses_uvloop(make_config(tmp_path).service.event_loop)
    loop = event_loop.new_event_loop("auto")
    try:
        assert event_loop.describe(loop) == "asyncio"
    finally:
        loop.close()
    with pytest.raises(ConfigError):
        make_config(tmp_path, service={"event_loop": "trio"})
