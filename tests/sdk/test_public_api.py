"""spanmeter.sdk's public surface, and that it imports without the collector's server parts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import spanmeter.sdk
from spanmeter.config import Config
from spanmeter.usage_schema import MAX_FIELD_CHARS


def test_exported_members() -> None:
    """Pinned: a name added or removed here is a change of the public API (httpx's test, adopted)."""
    assert spanmeter.sdk.__all__ == [
        "UsageContext",
        "UsageSpanProcessor",
        "carry_context",
        "configure",
        "meter",
        "track_event",
        "usage_context",
    ]
    for name in spanmeter.sdk.__all__:
        assert getattr(spanmeter.sdk, name).__module__.startswith("spanmeter.sdk"), name


def test_the_sdk_checks_the_collectors_default_field_limit() -> None:
    assert Config().processors.usage.max_field_chars == MAX_FIELD_CHARS


# The collector's server dependencies: an app with only opentelemetry-api/-sdk and the OTLP/HTTP
# exporter (`pip install 'spanmeter[sdk]'`) has none of them.
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "grpc", "sqlite_utils", "sqlite3", "genai_prices", "pydantic",
                  "click", "yaml", "prometheus_client", "standardwebhooks", "httpx", "uvloop")

ISOLATED = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is a server module")
            return None

    sys.meta_path.insert(0, Refuse())
    from spanmeter.sdk import configure, meter, track_event, usage_context
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = configure(endpoint="http://127.0.0.1:9", service_name="isolated")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with usage_context(customer_id="acme"):
        track_event("signed_up", family="activation")
        meter("pages", 2)
    spans = memory.get_finished_spans()
    assert [s.attributes["usage.customer.id"] for s in spans] == ["acme", "acme"], spans
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith("spanmeter."))
    print(" ".join(loaded), flush=True)
    import os
    os._exit(0)  # no exit-time export to the closed port
    """
)


def test_sdk_imports_and_runs_without_server_modules() -> None:
    code = f"BLOCKED = {set(SERVER_MODULES)!r}\n" + ISOLATED
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert all(m.startswith(("spanmeter.sdk", "spanmeter.usage_schema")) for m in loaded), loaded
