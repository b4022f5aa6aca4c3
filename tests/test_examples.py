"""Every app of examples/ runs as a user runs it (its own process, the standard OTEL_* and SDK
variables) against the fake provider and a running spanmeter, and makes the records its README says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanmeter.record import UsageRecord
from tests.conftest import RunningCollector, make_config, running_collector
from tests.fakes.llm_provider import FakeProvider

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDS = {"openai_app": ("openai", "opentelemetry.instrumentation.openai_v2"), "anthropic_app": ("anthropic",),
         "product_events": (), "agent_app": ("openai", "opentelemetry.instrumentation.openai_v2")}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningCollector, FakeProvider]]:
    with running_collector(make_config(tmp_path_factory.mktemp("examples"))) as collector, FakeProvider() as fake:
        yield collector, fake


def run_example(name: str, target: tuple[RunningCollector, FakeProvider]) -> tuple[str, list[UsageRecord]]:
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[test]')")
    collector, fake = target
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_url, OTEL_SERVICE_NAME=f"example-{name}",
               OPENAI_BASE_URL=fake.openai_base_url, OPENAI_API_KEY="sk-fake",
               ANTHROPIC_BASE_URL=fake.anthropic_base_url, ANTHROPIC_API_KEY="sk-ant-fake")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name / "app.py")], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The app shut its provider down (flushed); spanmeter answered after committing.
    return proc.stdout, [r for r in collector.records() if r.service_name == f"example-{name}"]


def test_every_example_has_a_readme_and_a_test() -> None:
    found = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert found == set(NEEDS)
    assert all((EXAMPLES / name / "README.md").is_file() for name in found)


def test_openai_app(target: tuple[RunningCollector, FakeProvider]) -> None:
    out, records = run_example("openai_app", target)
    assert sorted((r.kind, r.customer_id, r.request_model) for r in records) == [
        ("llm", "acme", "gpt-4o-mini"), ("llm", "globex", "gpt-4o-mini")]
    assert all(r.cost_usd and r.cost_usd > 0 for r in records)
    assert "acme: Hello from the fake provider." in out


def test_anthropic_app(target: tuple[RunningCollector, FakeProvider]) -> None:
    _, records = run_example("anthropic_app", target)
    assert [(r.kind, r.provider, r.customer_id, r.conversation_id) for r in records] == [
        ("llm", "anthropic", "acme", "ticket-4711")]
    assert records[0].cost_usd and records[0].cost_usd > 0


def test_product_events_app(target: tuple[RunningCollector, FakeProvider]) -> None:
    out, records = run_example("product_events", target)
    assert sorted((r.kind, r.type, r.customer_id, str(r.quantity or "")) for r in records) == [
        ("event", "plan_upgraded", "globex", ""), ("event", "report_exported", "acme", ""),
        ("event", "trial_started", "acme", ""), ("meter", "pages_rendered", "acme", "42"),
        ("meter", "storage_gb_hours", "globex", "0.25")]
    assert "refused: quantity must be > 0, got 0" in out


def test_agent_app_one_record_per_model_call(target: tuple[RunningCollector, FakeProvider]) -> None:
    _, records = run_example("agent_app", target)
    assert sorted((r.kind, r.request_model, r.customer_id) for r in records) == [
        ("llm", "gpt-4.1-mini", "acme"), ("llm", "gpt-4o-mini", "acme")]
    assert len({r.trace_id for r in records}) == 1  # both inside the agent's trace
