"""AWS Bedrock Runtime through boto3, instrumented by `opentelemetry-instrumentation-botocore`
(its GenAI extension for `bedrock-runtime`), against the fake provider's Bedrock endpoint.

Suite `bedrock`: Converse and ConverseStream (Nova, with cache reads), and failed calls."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from tests.e2e.drivers.common import CALL_MODELS, Call, main


def instrument(provider: TracerProvider) -> list[str]:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    BotocoreInstrumentor().instrument(tracer_provider=provider)
    return ["opentelemetry.instrumentation.botocore.BotocoreInstrumentor"]


def bedrock_calls(fake_url: str) -> list[Call]:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=fake_url, aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    messages: Any = [{"role": "user", "content": [{"text": "Say hi."}]}]
    system: Any = [{"text": "You are terse."}, {"cachePoint": {"type": "default"}}]

    def converse(label: str) -> Any:
        def run() -> Any:
            return client.converse(modelId=CALL_MODELS[label], messages=messages, system=system,
                                   inferenceConfig={"maxTokens": 100, "temperature": 0.2})["usage"]
        return run

    def stream(label: str) -> Any:
        def run() -> Any:
            response = client.converse_stream(modelId=CALL_MODELS[label], messages=messages, system=system)
            return [next(iter(event)) for event in response["stream"]]
        return run

    return [("bedrock.converse", converse("bedrock.converse")),
            ("bedrock.converse_stream", stream("bedrock.converse_stream")),
            ("bedrock.converse.error", converse("bedrock.converse.error")),
            ("bedrock.converse.error_429", converse("bedrock.converse.error_429")),
            ("bedrock.converse_stream.error_500", stream("bedrock.converse_stream.error_500"))]


if __name__ == "__main__":
    main(instrument, nested_style="otel", suites={"bedrock": bedrock_calls})
