"""spanmeter.sdk in a real app process: the real `openai` SDK under the official openai-v2
instrumentation calls the fake provider, exporting over OTLP/HTTP to a running spanmeter; the
records are read back through `/api/v1/usage/records`. Twice: with `configure()`, and zero-code
under `opentelemetry-instrument` (tests/e2e/drivers/sdk_app.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import REPO
from tests.fakes.llm_provider import FakeProvider

NEEDED = ("openai", "opentelemetry.instrumentation.openai_v2", "opentelemetry.distro")


def run_app(mode: str, collector: RunningCollector, fake: FakeProvider) -> dict[str, dict[str, Any]]:
    """Run the app in `mode`; its records, by request model (llm) or type (event, meter)."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[test]')")
    service = f"sdk-{mode}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "tests.e2e.drivers.sdk_app", "--mode", mode, "--endpoint", collector.http_url,
               "--fake-url", fake.base_url, "--service", service]
    if mode == "zero-code":
        env.update(
            OTEL_SERVICE_NAME=service,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_url,
            # Three installed openai instrumentations share the entry point name "openai": the app
            # instruments with openai-v2 alone (see the driver).
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="openai,anthropic",
        )
        command = [str(Path(sys.executable).with_name("opentelemetry-instrument")), *command]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["flushed"], proc.stderr[-4000:]
    # Exports are answered after their records are committed: the flushed app's records are all there.
    items = httpx.get(f"{collector.http_url}/api/v1/usage/records", params={"take": 500}).json()["items"]
    mine = [i for i in items if i.get("serviceName") == service]
    by_name = {i.get("requestModel") or i["type"]: i for i in mine}
    assert len(by_name) == len(mine), [i.get("requestModel") for i in mine]  # one record per call
    return by_name


@pytest.fixture(scope="module", params=["configure", "zero-code"])
def records(request: pytest.FixtureRequest, e2e_collector: RunningCollector,
            fake: FakeProvider) -> dict[str, dict[str, Any]]:
    return run_app(request.param, e2e_collector, fake)


def test_only_calls_inside_a_context_have_a_customer(records: dict[str, dict[str, Any]]) -> None:
    acme = records["sdk-acme"]
    assert (acme["customerId"], acme["userId"], acme["conversationId"], acme["feature"]) == (
        "acme", "u-1", "conv-1", "chat")
    assert acme["meta"] == {"plan": "pro"}
    for outside in ("sdk-outside", "sdk-outside-after"):
        assert "customerId" not in records[outside] and records[outside]["meta"] == {}


def test_nested_context_overrides_and_the_outer_one_returns(records: dict[str, dict[str, Any]]) -> None:
    nested = records["sdk-nested"]
    assert (nested["customerId"], nested["feature"], nested["userId"]) == ("globex", "summary", "u-1")
    assert records["sdk-after-nested"]["customerId"] == "acme"
    assert records["sdk-after-nested"]["feature"] == "chat"


def test_asyncio_tasks_and_threads_keep_the_context(records: dict[str, dict[str, Any]]) -> None:
    for model in ("sdk-task-1", "sdk-task-2", "sdk-to-thread"):
        assert records[model]["customerId"] == "initech", model
    for model in ("sdk-thread", "sdk-pool"):  # started through carry_context
        assert records[model]["customerId"] == "acme", model
    # A plain thread does not inherit contextvars (Python's rule): carry_context is the way.
    assert "customerId" not in records["sdk-thread-plain"]


def test_decorator_on_sync_and_async_functions(records: dict[str, dict[str, Any]]) -> None:
    assert (records["sdk-decorated"]["customerId"], records["sdk-decorated"]["feature"]) == ("hooli", "decorated")
    assert records["sdk-decorated-async"]["customerId"] == "hooli"
    assert records["sdk-decorated-async"]["feature"] == "decorated-async"


def test_track_event_round_trips(records: dict[str, dict[str, Any]]) -> None:
    event = records["report_exported"]
    assert event["kind"] == "event" and event["eventName"] == "report_exported"
    assert event["eventFamily"] == "activation"  # given as "Activation"
    assert event["customerId"] == "acme"  # from the context
    assert (event["userId"], event["email"], event["accountDomain"]) == ("dev-1", "dev@acme.example", "acme.example")
    assert event["product"] == {"id": "reports", "name": "Reports"}
    assert (event["source"], event["campaignId"]) == ("web", "spring")
    assert event["idempotencyKey"].endswith(":event-1")
    assert event["meta"] == {"format": "pdf", "plan": "pro"}


def test_meter_round_trips(records: dict[str, dict[str, Any]]) -> None:
    pages = records["pages_rendered"]
    assert pages["kind"] == "meter" and pages["quantity"] == "12.5" and pages["customerId"] == "acme"
    assert pages["meta"] == {"plan": "pro", "region": "eu"}
    seats = records["seats"]
    assert (seats["quantity"], seats["customerId"]) == ("3", "globex")
    assert seats["idempotencyKey"].endswith(":meter-2")
