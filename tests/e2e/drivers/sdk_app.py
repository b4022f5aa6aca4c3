"""An app using spanmeter.sdk: openai calls (official openai-v2 instrumentation, fake provider) in and
out of usage contexts, in asyncio tasks and threads, plus a product event and a meter.

`--mode configure`: the app calls spanmeter.sdk.configure(). `--mode zero-code`: run under
`opentelemetry-instrument` with OTEL_* variables; the app sets up no tracing at all, spanmeter's
post-instrument hook adds the usage processor. Each call uses its own model name, so the test
finds its record by `requestModel`. Prints a JSON report as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from spanmeter.sdk import carry_context, configure, meter, track_event, usage_context


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("configure", "zero-code"), required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--fake-url", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()

    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    if args.mode == "configure":
        provider = configure(endpoint=args.endpoint, service_name=args.service)
    else:
        provider = trace.get_tracer_provider()  # set by opentelemetry-instrument
        assert isinstance(provider, TracerProvider), type(provider)
    # The other openai instrumentations of the e2e extra register under the same entry point name
    # ("openai"), so the zero-code test disables them all and instruments openai-v2 here.
    OpenAIInstrumentor().instrument()

    client = openai.OpenAI(base_url=f"{args.fake_url}/v1", api_key="sk-test", max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{args.fake_url}/v1", api_key="sk-test", max_retries=0)

    def call(model: str) -> str:
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]).id

    async def acall(model: str) -> str:
        response = await aclient.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        return response.id

    @usage_context(customer_id="hooli", feature="decorated")
    def decorated() -> str:
        return call("sdk-decorated")

    @usage_context(customer_id="hooli", feature="decorated-async")
    async def decorated_async() -> str:
        return await acall("sdk-decorated-async")

    async def in_tasks() -> None:
        async with usage_context(customer_id="initech"):
            await asyncio.gather(asyncio.create_task(acall("sdk-task-1")), asyncio.create_task(acall("sdk-task-2")))
            await asyncio.to_thread(call, "sdk-to-thread")
        await decorated_async()

    call("sdk-outside")
    with usage_context(customer_id="acme", user_id="u-1", conversation_id="conv-1", feature="chat", plan="pro"):
        call("sdk-acme")
        with usage_context(customer_id="globex", feature="summary"):
            call("sdk-nested")
        call("sdk-after-nested")
        thread = threading.Thread(target=carry_context(call), args=("sdk-thread",))
        thread.start()
        thread.join()
        plain = threading.Thread(target=call, args=("sdk-thread-plain",))
        plain.start()
        plain.join()
        with ThreadPoolExecutor(2) as pool:
            pool.submit(carry_context(call), "sdk-pool").result()
        track_event("report_exported", family="Activation", developer_id="dev-1", email="dev@acme.example",
                    account_domain="acme.example", product={"id": "reports", "name": "Reports"}, source="web",
                    campaign_id="spring", idempotency_key=f"{args.service}:event-1", format="pdf")
        meter("pages_rendered", "12.5", idempotency_key=f"{args.service}:meter-1", region="eu")
    meter("seats", 3, customer_id="globex", idempotency_key=f"{args.service}:meter-2")
    decorated()
    asyncio.run(in_tasks())
    call("sdk-outside-after")

    flushed = provider.force_flush(15_000)
    json.dump({"flushed": flushed}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
