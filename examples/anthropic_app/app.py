"""A customer's Claude call, traced by the anthropic SDK itself, billed to that customer."""

from __future__ import annotations

import anthropic

from spanmeter.sdk import configure, usage_context

provider = configure()  # before the client is made: the SDK's tracing uses the global provider
client = anthropic.Anthropic()  # ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY

with usage_context(customer_id="acme", conversation_id="ticket-4711", feature="triage"):
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=[{"role": "user", "content": "Classify this ticket."}]
    )
    print("acme:", message.content[0].text if message.content and message.content[0].type == "text" else "")

provider.shutdown()
