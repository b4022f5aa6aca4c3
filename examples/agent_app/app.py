"""An agent loop with nested spans: agent → model call → tool → model call. One record per model call."""

from __future__ import annotations

import json

import openai
from opentelemetry import trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from spanmeter.sdk import configure, usage_context

provider = configure()
OpenAIInstrumentor().instrument()
client = openai.OpenAI()
tracer = trace.get_tracer("example-agent")


def lookup_order(order_id: str) -> dict[str, str]:
    with tracer.start_as_current_span("execute_tool lookup_order", attributes={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
    }):
        return {"order_id": order_id, "status": "shipped"}


def run_agent(question: str) -> str:
    with tracer.start_as_current_span("invoke_agent support-agent", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent", "gen_ai.provider.name": "openai",
    }) as agent:
        messages: list[dict[str, str]] = [{"role": "user", "content": question}]
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        status = lookup_order("A-1001")  # a real agent would read the tool call from `first`
        messages += [{"role": "assistant", "content": first.choices[0].message.content or ""},
                     {"role": "user", "content": f"Tool result: {json.dumps(status)}"}]
        second = client.chat.completions.create(model="gpt-4.1-mini", messages=messages)  # type: ignore[arg-type]
        usages = [r.usage for r in (first, second) if r.usage is not None]
        # Frameworks put their children's totals on the agent span; spanmeter does not count them again.
        agent.set_attributes({"gen_ai.usage.input_tokens": sum(u.prompt_tokens for u in usages),
                              "gen_ai.usage.output_tokens": sum(u.completion_tokens for u in usages)})
        return second.choices[0].message.content or ""


with usage_context(customer_id="acme", user_id="alice", feature="order-agent"):
    print("agent:", run_agent("Where is my order A-1001?"))

provider.shutdown()
