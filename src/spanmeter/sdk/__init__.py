"""spanmeter.sdk: tell spanmeter who each LLM call and product event is for, from your app.

    from spanmeter.sdk import configure, usage_context, track_event, meter

    configure(endpoint="http://127.0.0.1:4318", service_name="support-bot")
    with usage_context(customer_id="acme", user_id="u-42", feature="chat"):
        client.chat.completions.create(...)     # its auto-instrumented span carries usage.customer.id=acme
        track_event("report_exported", family="activation")
        meter("pages_rendered", 12)

- `usage_context` puts the customer, user, conversation, feature and `usage.meta.*` values into
  OpenTelemetry baggage; `UsageSpanProcessor` stamps them as `usage.*` attributes on every span
  started inside (auto-instrumented LLM spans included). A context manager and a decorator (sync
  and async functions); asyncio tasks inherit it, threads get it through `carry_context`.
- `track_event` and `meter` emit one short span each with the attributes spanmeter turns into an
  `event` or a `meter` record, checked here with the collector's own rules (ValueError otherwise).
- `configure` sets up (or extends) the tracer provider: the usage processor and a batching OTLP/HTTP
  exporter to spanmeter. Under `opentelemetry-instrument` (zero-code) the processor is added by
  spanmeter's `opentelemetry_post_instrument` hook instead, with nothing to call.

Needs only opentelemetry-api and opentelemetry-sdk (plus opentelemetry-exporter-otlp-proto-http for
`configure`): `pip install 'spanmeter[sdk]'`.
"""

from spanmeter.sdk._configure import configure
from spanmeter.sdk._context import UsageContext, carry_context, usage_context
from spanmeter.sdk._events import meter, track_event
from spanmeter.sdk._processor import UsageSpanProcessor

__all__ = [
    "UsageContext",
    "UsageSpanProcessor",
    "carry_context",
    "configure",
    "meter",
    "track_event",
    "usage_context",
]
