"""Two customers' chat calls through the instrumented openai SDK, each billed to its customer."""

from __future__ import annotations

import openai
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from spanmeter.sdk import configure, usage_context

provider = configure()  # OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318
OpenAIInstrumentor().instrument()
client = openai.OpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY


def answer(question: str) -> str:
    response = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    return response.choices[0].message.content or ""


with usage_context(customer_id="acme", user_id="alice", feature="support-chat"):
    print("acme:", answer("How do I export a report?"))

with usage_context(customer_id="globex", user_id="bob", feature="support-chat", plan="enterprise"):
    print("globex:", answer("Can I add a seat?"))

provider.shutdown()  # sends what is still batched
