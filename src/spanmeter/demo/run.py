"""`spanmeter demo`: a collector on free ports and a fresh database, an app calling the real `openai`
SDK under the official OpenTelemetry instrumentation against a local fake provider for two
customers, a few product events and a meter; then the records, the totals per customer, and the
commands to look further.

Everything runs in this process: the collector on a background thread, the app on the main one,
exporting over real OTLP/HTTP. The directory (config and database) is kept for those commands.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import yaml

from spanmeter.background import background_collector
from spanmeter.config import load_config
from spanmeter.demo.fake_provider import FakeProvider, Usage
from spanmeter.record import UsageRecord
from spanmeter.store.base import RecordFilter

# The modules the demo app needs beyond the collector, and the extra that installs them.
NEEDED: Final = ("openai", "opentelemetry.instrumentation.openai_v2", "opentelemetry.sdk",
                 "opentelemetry.exporter.otlp.proto.http")
EXTRA: Final = "pip install 'spanmeter[demo]'"

# request model → (the model the fake answers with, its usage): real models, so genai-prices prices them.
MODELS: Final = {
    "gpt-4o-mini": ("gpt-4o-mini-2024-07-18", Usage(1300, 250, cache_read_tokens=1024)),
    "gpt-4.1-mini": ("gpt-4.1-mini-2025-04-14", Usage(2100, 310, cache_read_tokens=1536)),
    "text-embedding-3-small": ("text-embedding-3-small", Usage(12)),
}

Echo = Callable[[str], None]


class MissingExtra(RuntimeError):
    """The demo app's packages are not installed."""


def check_installed() -> None:
    missing = [m for m in NEEDED if not _spec(m)]
    if missing:
        raise MissingExtra(f"spanmeter demo needs the openai SDK and its OpenTelemetry instrumentation "
                           f"({', '.join(missing)} missing): {EXTRA}")


def _spec(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def write_config(directory: Path) -> Path:
    """A config for the demo: free loopback ports, the database in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spanmeter.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"},
                                             "http": {"endpoint": "127.0.0.1:0"}}}},
        "storage": {"sqlite": {"path": str(directory / "spanmeter.db")}},
    }, sort_keys=False))
    return path


def run_demo(directory: Path, echo: Echo) -> list[UsageRecord]:
    """Run the demo into `directory`; print as it goes; return the records stored (oldest first)."""
    check_installed()
    config_path = write_config(directory)
    config = load_config(config_path)
    with FakeProvider(usage={m: u for m, (_, u) in MODELS.items()},
                      response_models={m: r for m, (r, _) in MODELS.items()}) as fake, \
            background_collector(config) as running:
        echo(f"spanmeter is listening on {running.http_url} (OTLP/HTTP) and {running.grpc_endpoint} (OTLP/gRPC); "
             f"a fake OpenAI API on {fake.openai_base_url}")
        run_app(running.http_url, fake.openai_base_url)
        records = list(reversed(running.collector.store.recent(RecordFilter(), 1000)))
    print_records(records, echo)
    print_totals(records, echo)
    echo("")
    echo(f"The database is kept in {directory}. To look further:")
    echo(f"  spanmeter records -c {config_path} --customer acme")
    echo(f"  spanmeter records -c {config_path} --json")
    echo(f"  spanmeter serve -c {config_path}    # then, with the port it prints:")
    echo("  curl 'http://127.0.0.1:PORT/api/v1/usage/records?customer=acme'")
    return records


def run_app(spanmeter_url: str, openai_base_url: str) -> None:
    """The app: what a user writes with spanmeter.sdk around an instrumented openai client."""
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    from spanmeter.sdk import configure, meter, track_event, usage_context

    provider = configure(endpoint=spanmeter_url, service_name="spanmeter-demo")
    instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=openai_base_url, api_key="sk-demo", max_retries=0)
        question: Any = [{"role": "user", "content": "Summarise this ticket."}]
        with usage_context(customer_id="acme", user_id="alice", feature="support-chat", plan="pro"):
            client.chat.completions.create(model="gpt-4o-mini", messages=question)
            client.chat.completions.create(model="gpt-4.1-mini", messages=question)
            client.embeddings.create(model="text-embedding-3-small", input=["ticket 4711"])
            track_event("report_exported", family="activation", product={"id": "reports", "name": "Reports"})
            meter("pages_rendered", 12)
        with usage_context(customer_id="globex", user_id="bob", feature="summaries"):
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True,
                                                    stream_options={"include_usage": True})
            for _ in stream:
                pass
            track_event("plan_upgraded", family="expansion", product="summaries")
        provider.force_flush(10_000)  # spanmeter answers an export once its records are committed
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def print_records(records: list[UsageRecord], echo: Echo) -> None:
    echo("")
    echo(f"{len(records)} usage records:")
    columns = ("kind", "type", "customer", "model", "input", "output", "quantity", "cost_usd")
    rows = [[
        r.kind, r.type, r.customer_id or "-", r.response_model or r.request_model or "-",
        _text(r.input_tokens), _text(r.output_tokens), _text(r.quantity), _text(r.cost_usd),
    ] for r in records]
    _table(columns, rows, echo)


@dataclass
class _Totals:
    calls: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    events: int = 0
    metered: dict[str, Decimal] = field(default_factory=dict)


def print_totals(records: list[UsageRecord], echo: Echo) -> None:
    totals: dict[str, _Totals] = {}
    for r in records:
        t = totals.setdefault(r.customer_id or "-", _Totals())
        if r.kind == "llm":
            t.calls += 1
            t.tokens += (r.input_tokens or 0) + (r.output_tokens or 0)
        elif r.kind == "event":
            t.events += 1
        elif r.meter is not None and r.quantity is not None:
            t.metered[r.meter] = t.metered.get(r.meter, Decimal(0)) + r.quantity
        t.cost += r.cost_usd or 0
    echo("")
    echo("Per customer:")
    rows = [[customer, str(t.calls), str(t.tokens), str(t.events),
             ", ".join(f"{m}={_text(q)}" for m, q in sorted(t.metered.items())) or "-", _text(t.cost)]
            for customer, t in sorted(totals.items())]
    _table(("customer", "llm_calls", "tokens", "events", "meters", "cost_usd"), rows, echo)


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.00000024, not 2.4E-7
    return "-" if value is None else str(value)


def _table(columns: tuple[str, ...], rows: list[list[str]], echo: Echo) -> None:
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(columns)]
    echo("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        echo("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
