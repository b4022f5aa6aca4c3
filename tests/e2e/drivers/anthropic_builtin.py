"""No instrumentation library: the anthropic SDK's own built-in tracing (on by default in 2.x),
plus plain-OTel parents for the nested suite."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import main


def instrument(provider: TracerProvider) -> list[str]:
    return []


if __name__ == "__main__":
    main(instrument, nested_style="otel")
