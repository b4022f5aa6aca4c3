"""End-to-end fixtures: a real collector, the fake LLM provider, and subprocess drivers that run the
real `openai` / `anthropic` SDKs under one instrumentation library each, exporting through the real
OTLP exporter (tests/e2e/drivers).

The fake provider runs in the test process (so the test, not the driver, knows what the server
answered); its usage table gives every call a distinct model and distinct token counts, so a
record names its call and a count that comes from the wrong place shows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from spanmeter.record import UsageRecord
from tests.conftest import RunningCollector, make_config, running_collector
from tests.e2e.drivers.common import is_failure
from tests.fakes.llm_provider import Exchange, FakeProvider, Usage

REPO = Path(__file__).resolve().parents[2]

# request model -> (response model, usage in the inclusive GenAI form). Models of tests/e2e/drivers/common.py.
MODELS: dict[str, tuple[str, Usage]] = {
    "gpt-4o-mini": ("gpt-4o-mini-2024-07-18", Usage(1300, 250, cache_read_tokens=1024, reasoning_tokens=192)),
    "gpt-4.1-mini": ("gpt-4.1-mini-2025-04-14", Usage(2100, 310, cache_read_tokens=1536, reasoning_tokens=64)),
    "gpt-4o": ("gpt-4o-2024-08-06", Usage(900, 90)),  # streamed without include_usage: never sent
    "text-embedding-3-small": ("text-embedding-3-small", Usage(12)),
    "gpt-4.1-nano": ("gpt-4.1-nano-2025-04-14", Usage(700, 120, cache_read_tokens=512)),
    "o4-mini": ("o4-mini-2025-04-16", Usage(1800, 960, cache_read_tokens=1024, reasoning_tokens=704)),
    "claude-haiku-4-5": ("claude-haiku-4-5-20251001", Usage(1217, 42, cache_read_tokens=1000, cache_write_tokens=200)),
    "claude-sonnet-4-5": ("claude-sonnet-4-5-20250929",
                          Usage(3456, 120, cache_read_tokens=2048, cache_write_tokens=1024)),
    "claude-opus-4-1": ("claude-opus-4-1-20250805", Usage(530, 77, cache_write_tokens=512)),
    # LangChain's stream inside an app span.
    "o3-mini": ("o3-mini-2025-01-31", Usage(1100, 400, cache_read_tokens=512, reasoning_tokens=256)),
    # Streams the client stops reading early (Logfire's partial-stream suite).
    "gpt-4.1": ("gpt-4.1-2025-04-14", Usage(1500, 220, cache_read_tokens=1024)),
    "gpt-3.5-turbo": ("gpt-3.5-turbo-0125", Usage(640, 33)),
    "claude-3-5-haiku-latest": ("claude-3-5-haiku-20241022", Usage(2300, 180, cache_read_tokens=2048)),
    # Streams the provider breaks after their first content chunk (the fake's midstream-error models).
    "midstream-error-gpt": ("gpt-4-turbo-2024-04-09", Usage(820, 140)),
    "midstream-error-claude": ("claude-3-7-sonnet-20250219", Usage(2600, 150, cache_read_tokens=2048)),
    # Bedrock Converse (stream) on Nova: 438 input tokens, 128 of them cache reads (310 uncached, the
    # count Bedrock sends as inputTokens).
    # Gemini: promptTokenCount includes the cached tokens, candidatesTokenCount leaves the thoughts out.
    "gemini-2.5-flash": ("gemini-2.5-flash", Usage(1200, 300, cache_read_tokens=800, reasoning_tokens=120)),
    "gemini-2.0-flash": ("gemini-2.0-flash-001", Usage(950, 70, cache_read_tokens=512)),
    "amazon.nova-pro-v1:0": ("amazon.nova-pro-v1:0", Usage(438, 64, cache_read_tokens=128)),
    "amazon.nova-lite-v1:0": ("amazon.nova-lite-v1:0", Usage(438, 91, cache_read_tokens=128)),
}

# The Python module each driver needs (to skip with a clear reason outside CI when the `e2e` extra
# is not installed; in CI a missing package is a failure).
DRIVER_MODULES = {
    "openai_v2": ("openai", "opentelemetry.instrumentation.openai_v2"),
    "openllmetry": ("openai", "anthropic", "opentelemetry.instrumentation.openai",
                    "opentelemetry.instrumentation.anthropic"),
    "openinference": ("openai", "anthropic", "openinference.instrumentation.openai",
                      "openinference.instrumentation.anthropic"),
    "anthropic_builtin": ("anthropic",),
    "langfuse_sdk": ("openai", "langfuse"),
    "logfire_sdk": ("openai", "anthropic", "logfire"),
    "bedrock": ("boto3", "opentelemetry.instrumentation.botocore"),
    "google_genai": ("google.genai", "opentelemetry.instrumentation.google_genai"),
    "langchain_app": ("openai", "langchain_openai", "openinference.instrumentation.langchain",
                      "opentelemetry.instrumentation.langchain"),
}
_ENV_PREFIXES = ("OTEL_", "OPENINFERENCE_", "TRACELOOP_", "ANTHROPIC_", "OPENAI_")


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeProvider]:
    """One fake provider for the session: its response ids never repeat across drivers."""
    with FakeProvider(
        usage={model: usage for model, (_, usage) in MODELS.items()},
        response_models={model: response for model, (response, _) in MODELS.items()},
    ) as provider:
        yield provider


@pytest.fixture(scope="module")
def e2e_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    """One collector per test module (each module drives one library)."""
    with running_collector(make_config(tmp_path_factory.mktemp("e2e"))) as running:
        yield running


# A call label's first part -> the fake's API prefix (= the record's genai-prices provider).
API_OF_LABEL = {"openai": "openai", "anthropic": "anthropic", "bedrock": "aws", "gemini": "google"}


@dataclass
class DriverRun:
    """What one driver process did: its report, the exchanges the fake saw, the records stored."""

    service: str
    report: dict[str, Any]
    exchanges: list[Exchange]
    records: list[UsageRecord] = field(default_factory=list)  # this run's `llm` records

    def exchange(self, label: str) -> Exchange:
        from tests.e2e.drivers.common import CALL_MODELS

        api = API_OF_LABEL.get(label.split(".")[0], "openai")  # nested.*: openai
        found = [x for x in self.exchanges if x.model == CALL_MODELS[label] and x.api.startswith(api)]
        assert len(found) == 1, (label, [x.model for x in self.exchanges])
        return found[0]

    def records_for(self, exchange: Exchange) -> list[UsageRecord]:
        names = {exchange.model, exchange.response_model} - {None}
        provider = exchange.api.split(".")[0]
        return [r for r in self.records
                if r.provider == provider and (r.request_model in names or r.response_model in names)]

    def record(self, label: str) -> tuple[UsageRecord, Exchange]:
        """The one record of a call (fails, showing what was stored, if it is not exactly one)."""
        exchange = self.exchange(label)
        found = self.records_for(exchange)
        assert len(found) == 1, (label, [describe(r) for r in found], self.span_summary())
        return found[0], exchange

    def spans(self, **where: Any) -> list[dict[str, Any]]:
        return [s for s in self.report["spans"] if all(s.get(k) == v for k, v in where.items())]

    def span_summary(self) -> list[str]:
        return [f"{s['name']} [{s['scope']}] {s['span_id']}<-{s['parent_span_id']}" for s in self.report["spans"]]


def run_driver(
    driver: str,
    collector: RunningCollector,
    fake: FakeProvider,
    *,
    service: str,
    suites: str = "openai,anthropic,nested",
    protocol: str = "grpc",
    anthropic_builtin: bool = False,
    env: dict[str, str] | None = None,
) -> DriverRun:
    """Run tests/e2e/drivers/<driver>.py in its own process against `collector` and `fake`."""
    missing = [m for m in DRIVER_MODULES[driver] if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{driver}: {', '.join(missing)} not installed (pip install -e '.[test]')")
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_url
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    child_env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        ANTHROPIC_OPEN_TELEMETRY="true" if anthropic_builtin else "false",
        OTEL_PYTHON_LOG_LEVEL="error",
        **(env or {}),
    )
    before = len(fake.exchanges)
    proc = subprocess.run(
        [sys.executable, "-m", f"tests.e2e.drivers.{driver}", "--endpoint", endpoint, "--protocol", protocol,
         "--fake-url", fake.base_url, "--service", service, "--suites", suites],
        cwd=REPO, env=child_env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, f"driver {driver} failed:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["flushed"], f"driver {driver}: OTLP export did not flush\n{proc.stderr[-4000:]}"
    for call in report["calls"]:
        assert (call["error"] is not None) == is_failure(call["label"]), call
    run = DriverRun(service, report, fake.exchanges[before:])
    # The collector acknowledges an export only after its records are committed, so the flushed
    # driver's records are all there now.
    run.records = [r for r in collector.records(kind="llm") if r.service_name == service]
    return run


# --- what a record must say -------------------------------------------------------------------

def describe(record: UsageRecord) -> dict[str, Any]:
    return {k: v for k, v in record.to_dict().items() if v not in (None, [], {}, "")}


def expected_cost(record: UsageRecord) -> Any:
    """genai-prices' price of the record's own provider, model, tokens and time."""
    usage = genai_prices.Usage(
        input_tokens=record.input_tokens or 0,
        output_tokens=record.output_tokens or 0,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
    )
    model = record.response_model or record.request_model
    assert model is not None
    when = datetime.fromtimestamp(record.occurred_at / 1e9, UTC)
    return genai_prices.calc_price(usage, model, provider_id=record.provider, genai_request_timestamp=when).total_price


def assert_call_record(
    record: UsageRecord,
    exchange: Exchange,
    *,
    reports: Iterable[str] = ("cache_read", "cache_write", "reasoning"),
    response_id: bool = True,
    output_tokens: int | None = None,
    request_model: str | None = None,
    names_request_model: bool = True,
    operation: str = "chat",
) -> None:
    """`record` is the exact account of the provider's answer in `exchange`.

    `reports`: which token parts the library puts on its span (a part it does not report must be
    NULL, never guessed). `response_id`: whether the library emits gen_ai.response.id.
    `output_tokens` / `request_model`: what the library emits where a known upstream bug makes it
    differ from the call. `names_request_model=False`: the library names only the model that
    answered (a failed call's record has the requested one, as there was no answer).
    """
    provider = exchange.api.split(".")[0]
    assert record.kind == "llm"
    assert record.provider == provider
    if names_request_model or exchange.status >= 400:
        assert record.request_model == (request_model or exchange.model)
    else:
        assert record.request_model is None
    assert record.operation == record.type == ("embeddings" if exchange.api == "openai.embeddings" else operation)
    assert record.occurred_at > 0 and record.latency_ms is not None and record.latency_ms >= 0
    if exchange.status >= 400:
        assert record.status == "error"
        assert record.error_type
        assert record.input_tokens is None and record.output_tokens is None and record.total_tokens is None
        assert record.cost_usd is None and record.cost_source == "none"
        return
    usage = exchange.usage
    assert usage is not None
    assert record.status == "success" and record.error_type is None
    assert record.response_model == exchange.response_model
    if response_id:
        assert record.message_id == exchange.response_id
        assert record.idempotency_key == f"llm:{provider}:{exchange.response_id}"
    assert record.input_tokens == usage.input_tokens
    output = usage.output_tokens if output_tokens is None else output_tokens
    if exchange.api == "openai.embeddings":
        assert record.output_tokens in (None, 0)
        assert record.total_tokens == usage.input_tokens
    else:
        assert record.output_tokens == output
        assert record.total_tokens == usage.input_tokens + output
    reports = set(reports)
    parts = {"cache_read": usage.cache_read_tokens, "cache_write": usage.cache_write_tokens,
             "reasoning": usage.reasoning_tokens}
    for part, value in parts.items():
        got = getattr(record, f"{part}_tokens")
        if part in reports:
            # A library may omit a part that is zero (e.g. no cache write on an OpenAI call).
            assert got == value or (got is None and value == 0), (part, got, value)
        else:
            assert got is None, (part, got)
    assert record.cost_source == "computed"
    assert record.price_ref and "genai-prices" in record.price_ref
    assert record.cost_usd == expected_cost(record)
    # The same price computed from what the server sent (the parts the library reports).
    server_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=output,
        cache_read_tokens=usage.cache_read_tokens if "cache_read" in reports else None,
        cache_write_tokens=usage.cache_write_tokens if "cache_write" in reports else None,
    )
    when = datetime.fromtimestamp(record.occurred_at / 1e9, UTC)
    assert record.cost_usd == genai_prices.calc_price(
        server_usage, exchange.response_model or "", provider_id=provider, genai_request_timestamp=when
    ).total_price
    assert record.cost_usd > 0


def assert_stream_without_usage(run: DriverRun, *, names_request_model: bool = True) -> None:
    """A stream without include_usage: the server sent no counts, so the record has none (NULL, not
    0) and no cost — nothing is estimated."""
    record, exchange = run.record("openai.chat.stream_no_usage")
    assert exchange.status == 200 and exchange.wire_usage is None
    assert record.status == "success"
    assert (record.request_model, record.response_model)[0 if names_request_model else 1] == (
        "gpt-4o" if names_request_model else exchange.response_model)
    for name in ("input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cache_write_tokens",
                 "reasoning_tokens"):
        assert getattr(record, name) is None, name
    assert record.cost_usd is None and record.cost_source == "none"


def assert_nested_trace(run: DriverRun) -> None:
    """agent → chain/workflow → two model calls, totals repeated on both parents: exactly the two
    model calls are records, in the agent's trace."""
    first, second = run.exchange("nested.first"), run.exchange("nested.second")
    model_spans = [s for s in run.report["spans"] if s["scope"] != "spanmeter-e2e-app"]
    parents = run.spans(scope="spanmeter-e2e-app")
    assert len(parents) == 2, run.span_summary()
    agent = next(s for s in parents if s["parent_span_id"] is None)
    chain = next(s for s in parents if s["parent_span_id"] == agent["span_id"])
    children = [s for s in model_spans if s["parent_span_id"] == chain["span_id"]]
    assert len(children) == 2, run.span_summary()
    # The parents really carry the children's totals (else the test would prove nothing).
    usage = [first.usage, second.usage]
    assert all(u is not None for u in usage)
    total_in = sum(u.input_tokens for u in usage if u)
    assert total_in in agent["attributes"].values() and total_in in chain["attributes"].values()
    in_trace = [r for r in run.records if r.trace_id == agent["trace_id"]]
    assert sorted(r.span_id for r in in_trace) == sorted(s["span_id"] for s in children), [
        describe(r) for r in in_trace]
    models = [r.request_model or r.response_model for r in in_trace]  # some libraries name only the latter
    assert sorted(models) in (sorted([first.model, second.model]),
                              sorted([first.response_model or "", second.response_model or ""]))
    assert sum(r.input_tokens or 0 for r in in_trace) == total_in


def assert_one_record_per_call(run: DriverRun) -> None:
    """Every provider call the fake answered, failed ones too, is exactly one `llm` record of this run."""
    assert len(run.records) == len(run.exchanges), ([describe(r) for r in run.records], run.span_summary())
    for exchange in run.exchanges:
        assert len(run.records_for(exchange)) == 1, exchange.model


# Failed calls of every driver: (label, HTTP status the fake answers). Streams fail before streaming.
FAILED_OPENAI = {"openai.chat.error": 400, "openai.chat.error_429": 429, "openai.chat.stream.error_500": 500}
FAILED_ANTHROPIC = {"anthropic.messages.error": 400, "anthropic.messages.error_429": 429,
                    "anthropic.messages.stream.error_529": 529, "anthropic.messages.stream_helper.error_500": 500}


def run_suite_with_capture(driver: str, collector: RunningCollector, fake: FakeProvider, *, suite: str,
                           package: str, capture: str) -> DriverRun:
    """Run one suite of `driver` as service `e2e-<driver>`, and store it as the capture named
    `capture` with `{version}` = the installed version of `package` (see write_capture)."""
    done = run_driver(driver, collector, fake, service=f"e2e-{driver.replace('_', '-')}", suites=suite)
    write_capture(done, capture.format(version=done.report["packages"][package]))
    return done


def assert_failed_status_record(run: DriverRun, label: str, status: int, *, operation: str = "chat") -> UsageRecord:
    """The call the fake answered with HTTP `status` is one `status=error` record (no tokens, no cost)."""
    record, exchange = run.record(label)
    assert exchange.status == status
    assert_call_record(record, exchange, operation=operation)
    return record


def assert_failed_call_record(run: DriverRun, label: str, *, by_request_id: bool = False) -> UsageRecord:
    """A failed call is exactly one `status=error` record with an error type, no tokens, no cost.
    `by_request_id`: keyed by the provider's request id (two tracers of it were merged by it)."""
    status = {**FAILED_OPENAI, **FAILED_ANTHROPIC}[label]
    record, exchange = run.record(label)
    assert exchange.status == status
    assert_call_record(record, exchange)
    if by_request_id:
        assert exchange.response is not None
        assert record.idempotency_key == f"llm:{record.provider}:request/{exchange.response['request_id']}"
    return record


def source_span(run: DriverRun, record: UsageRecord) -> dict[str, Any]:
    """The span a record was made from."""
    return next(s for s in run.report["spans"] if s["span_id"] == record.span_id)


def assert_two_tracers_one_record(run: DriverRun, label: str, library_scope: str) -> tuple[UsageRecord, Exchange,
                                                                                           dict[str, Any]]:
    """The anthropic SDK's span and `library_scope`'s span of the call both carry its response id, and
    they are one record, made from whichever of the two was stored first (returned)."""
    record, exchange = run.record(label)
    spans = [s for s in run.report["spans"] if s["attributes"].get("gen_ai.response.id") == exchange.response_id]
    assert sorted(s["scope"] for s in spans) == sorted(["com.anthropic.sdk.python", library_scope]), run.span_summary()
    assert record.idempotency_key == f"llm:anthropic:{exchange.response_id}"
    source = source_span(run, record)
    assert source in spans
    return record, exchange, source


# --- captures: a driver run as golden test input (tests/fakes/captures, tests/test_convert_captures.py) ---

WRITE_CAPTURES = "SPANMETER_WRITE_CAPTURES"


def write_capture(run: DriverRun, name: str, *, env: dict[str, str] | None = None) -> None:
    """With SPANMETER_WRITE_CAPTURES=1, store `run` as tests/fakes/captures/<name>.json (the format
    tests/fakes/INSTRUMENTATIONS.md describes): each call with what the fake provider answered and
    the spans finished during it. Without it, nothing (the golden tests read the stored files)."""
    if not os.environ.get(WRITE_CAPTURES):
        return
    spans = {s["span_id"]: s for s in run.report["spans"]}
    calls = []
    for call in run.report["calls"]:
        if call["label"] == "nested" or not call["span_ids"]:
            continue  # two calls under app spans, or a call the library does not trace: the e2e tests cover it
        api = API_OF_LABEL.get(call["label"].split(".")[0], "openai")
        calls.append({
            "call": call["label"], "client_result": call["result"], "client_error": call["error"],
            "server": [_exchange_json(x) for x in run.exchanges
                       if x.model == call["model"] and x.api.startswith(api)],
            "spans": [_capture_span(spans[i]) for i in call["span_ids"]],
        })
    data = {"library": name, "variant": "e2e driver", "instrumentors": run.report["instrumented"],
            "python": sys.version.split()[0], "packages": run.report["packages"], "env": env or {}, "calls": calls}
    (REPO / "tests" / "fakes" / "captures" / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def _exchange_json(x: Exchange) -> dict[str, Any]:
    usage = x.usage
    return {"api": x.api, "path": x.path, "status": x.status, "stream": x.stream, "model": x.model,
            "response_model": x.response_model, "response_id": x.response_id, "wire_usage": x.wire_usage,
            "usage_inclusive": None if usage is None else {
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
                "reasoning_tokens": usage.reasoning_tokens},
            "response": x.response if x.status >= 400 else None}


def _capture_span(span: dict[str, Any]) -> dict[str, Any]:
    return {"name": span["name"], "kind": span["kind"],
            "status": {"code": span["status"], "description": span["status_description"]},
            "trace_id": span["trace_id"], "span_id": span["span_id"], "parent_span_id": span["parent_span_id"],
            "start_time_unix_nano": span["start_time_unix_nano"], "end_time_unix_nano": span["end_time_unix_nano"],
            "scope": {"name": span["scope"], "version": span["scope_version"], "schema_url": ""},
            "attributes": span["attributes"], "events": span["events"], "links": []}
