"""The span processor that stamps the usage context onto every span started inside it."""

from __future__ import annotations

import weakref
from typing import Final

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider

from spanmeter import usage_schema as U
from spanmeter.sdk._context import CONTEXT_ATTRIBUTES

_STAMPED: Final = frozenset(CONTEXT_ATTRIBUTES.values())


def stamped(key: str) -> bool:
    """Whether a baggage entry is one of the usage context's (never event, meter or key names:
    baggage from an upstream service must not turn every span into an event)."""
    return key in _STAMPED or (key.startswith(U.META_PREFIX) and len(key) > len(U.META_PREFIX))


class UsageSpanProcessor(SpanProcessor):
    """Copies the usage context (baggage entries `usage.customer.id`, `usage.user.id`,
    `usage.conversation.id`, `usage.feature`, `usage.meta.*`) onto each span as it starts.

    An attribute the span already has at its start is kept: an explicit value wins over the
    ambient one. Entries the collector would refuse (empty, over 4096 characters) are skipped,
    so a bad upstream baggage value cannot get the span rejected."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        if not entries:
            return
        own = span.attributes or {}
        for key, value in entries.items():
            if (
                stamped(key) and key not in own and isinstance(value, str)
                and 0 < len(value) <= U.MAX_FIELD_CHARS
            ):
                span.set_attribute(key, value)


# Providers given a UsageSpanProcessor here, so that configure() and the zero-code hook add one once.
_PROVIDERS: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


def add_usage_processor(provider: TracerProvider) -> bool:
    """Add a UsageSpanProcessor to `provider` unless this module already did; True if added."""
    if provider in _PROVIDERS:
        return False
    provider.add_span_processor(UsageSpanProcessor())
    _PROVIDERS.add(provider)
    return True
