"""UsageSpanProcessor on a real SDK tracer provider (in memory): what it stamps, and what it leaves."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from spanmeter.sdk import UsageSpanProcessor, carry_context, usage_context
from spanmeter.sdk._processor import add_usage_processor

Stamps = dict[str, dict[str, object]]


@pytest.fixture
def traced() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    provider = TracerProvider()
    provider.add_span_processor(UsageSpanProcessor())
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("test"), memory
    provider.shutdown()


def usage_attributes(memory: InMemorySpanExporter) -> Stamps:
    return {s.name: {k: v for k, v in (s.attributes or {}).items() if k.startswith("usage.")}
            for s in memory.get_finished_spans()}


def test_stamps_every_span_inside_and_none_outside(traced: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = traced
    tracer.start_span("before").end()
    context = usage_context(customer_id="acme", user_id="u-1", conversation_id="c-1", feature="chat", plan="pro", n=3)
    with context, tracer.start_as_current_span("parent"):
        tracer.start_span("child").end()
    tracer.start_span("after").end()
    stamps = usage_attributes(memory)
    expected = {"usage.customer.id": "acme", "usage.user.id": "u-1", "usage.conversation.id": "c-1",
                "usage.feature": "chat", "usage.meta.plan": "pro", "usage.meta.n": "3"}
    assert stamps == {"before": {}, "child": expected, "parent": expected, "after": {}}


def test_an_attribute_set_at_start_wins(traced: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = traced
    with usage_context(customer_id="acme"):
        tracer.start_span("explicit", attributes={"usage.customer.id": "globex"}).end()
    assert usage_attributes(memory)["explicit"] == {"usage.customer.id": "globex"}


def test_upstream_baggage_stamps_only_the_context_entries(traced: tuple[Tracer, InMemorySpanExporter]) -> None:
    """Baggage from a calling service must not turn spans into events, meters or oversized values."""
    tracer, memory = traced
    ctx = otel_context.get_current()
    for key, value in {"usage.customer.id": "acme", "usage.event.name": "x", "usage.meter": "m",
                       "usage.quantity": "1", "usage.idempotency_key": "k", "usage.meta.": "empty key",
                       "usage.feature": "f" * 5000, "usage.user.id": ""}.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = otel_context.attach(ctx)
    try:
        tracer.start_span("from-upstream").end()
    finally:
        otel_context.detach(token)
    assert usage_attributes(memory)["from-upstream"] == {"usage.customer.id": "acme"}


def test_nesting_overrides_and_restores(traced: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = traced
    outer = usage_context(customer_id="acme", feature="chat")
    with outer:
        with usage_context(customer_id="globex"):
            tracer.start_span("inner").end()
            with outer:  # the same object entered again
                tracer.start_span("reentered").end()
        tracer.start_span("outer").end()
    stamps = usage_attributes(memory)
    assert stamps["inner"] == {"usage.customer.id": "globex", "usage.feature": "chat"}
    assert stamps["reentered"]["usage.customer.id"] == "acme"
    assert stamps["outer"]["usage.customer.id"] == "acme"


def test_decorators_tasks_and_threads(traced: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = traced

    @usage_context(customer_id="sync")
    def sync_work() -> str:
        tracer.start_span("sync").end()
        return "done"

    @usage_context(customer_id="async")
    async def async_work() -> str:
        await asyncio.sleep(0)
        tracer.start_span("async").end()
        return "done"

    async def tasks() -> None:
        async with usage_context(customer_id="tasks"):
            async def child(name: str) -> None:
                await asyncio.sleep(0)
                tracer.start_span(name).end()

            await asyncio.gather(asyncio.create_task(child("task-1")), asyncio.create_task(child("task-2")))
            await asyncio.to_thread(lambda: tracer.start_span("to-thread").end())

    assert sync_work() == "done" and sync_work.__name__ == "sync_work"
    assert asyncio.run(async_work()) == "done"
    asyncio.run(tasks())
    with usage_context(customer_id="threads"):
        carried = threading.Thread(target=carry_context(lambda: tracer.start_span("carried").end()))
        plain = threading.Thread(target=lambda: tracer.start_span("plain").end())
        for thread in (carried, plain):
            thread.start()
            thread.join()
    customers = {name: attrs.get("usage.customer.id") for name, attrs in usage_attributes(memory).items()}
    assert customers == {"sync": "sync", "async": "async", "task-1": "tasks", "task-2": "tasks",
                         "to-thread": "tasks", "carried": "threads", "plain": None}


def test_added_once_per_provider() -> None:
    provider = TracerProvider()
    assert add_usage_processor(provider) is True
    assert add_usage_processor(provider) is False
    provider.shutdown()
