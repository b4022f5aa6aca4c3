"""Two different model calls that look alike in everything but the provider's ids (same model, same
second, same tokens, same trace or the same parent span even) stay two records, however their tracer keeps those ids or if
it keeps none; the same call described twice is one. Checked through conversion and a real SQLite
store, over random ids and emitter styles."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert.spans import ConvertOptions, convert_traces
from spanmeter.store.sqlite import SQLiteStore
from tests.captures import any_value

START = 1_763_900_000_123_000_000
TOKENS = {"input": 1217, "output": 42, "cache_read": 1000}


def genai(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """Current GenAI names (openai-v2, OpenLLMetry, the anthropic SDK) with gen_ai.response.id."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.response.model": "claude-haiku-4-5-20251001",
        "gen_ai.usage.input_tokens": TOKENS["input"], "gen_ai.usage.output_tokens": TOKENS["output"],
        "gen_ai.usage.cache_read.input_tokens": TOKENS["cache_read"],
    }
    if call_id is not None:
        attrs["gen_ai.response.id"] = call_id
    return attrs, Status.STATUS_CODE_OK, ""


def openinference_body(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """OpenInference default mode: the id only in the raw response body."""
    attrs: dict[str, Any] = {
        "openinference.span.kind": "LLM", "llm.provider": "anthropic", "llm.system": "anthropic",
        "llm.request.model_name": "claude-haiku-4-5", "llm.model_name": "claude-haiku-4-5-20251001",
        "llm.token_count.prompt": TOKENS["input"], "llm.token_count.completion": TOKENS["output"],
        "llm.token_count.prompt_details.cache_read": TOKENS["cache_read"],
        "output.mime_type": "application/json",
        "output.value": json.dumps({**({"id": call_id} if call_id is not None else {}), "type": "message",
                                    "usage": {"input_tokens": 17, "output_tokens": 42}}),
    }
    return attrs, Status.STATUS_CODE_OK, ""


def sdk_error(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """The anthropic SDK's failed call: the request id attribute."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                             "gen_ai.request.model": "claude-haiku-4-5", "error.type": "overloaded_error"}
    if call_id is not None:
        attrs["anthropic.request.id"] = call_id
    return attrs, Status.STATUS_CODE_ERROR, ""


def library_error(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """An instrumentation library's failed call: the request id quoted in its error message."""
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if call_id is not None:
        body["request_id"] = call_id
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
             "gen_ai.request.model": "claude-haiku-4-5", "error.type": "OverloadedError"}
    return attrs, Status.STATUS_CODE_ERROR, f"Error code: 529 - {body!r}"


def langchain_result(message: dict[str, Any]) -> str:
    return json.dumps({"generations": [[{"text": message.get("content", ""), "type": "ChatGeneration", "message": {
        "lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessageChunk"],
        "kwargs": message}}]], "llm_output": None, "run": None, "type": "LLMResult"})


def langchain_stream(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """OpenInference's LangChain span of a streamed call: LangChain's result names no provider id, only
    its own run id as the message id (here from `call_id`: never a provider id)."""
    message = {"content": "Hi", "type": "AIMessageChunk", "id": f"lc_run--{call_id or 'none'}",
               "response_metadata": {"model_provider": "anthropic", "model_name": "claude-haiku-4-5-20251001"}}
    attrs: dict[str, Any] = {
        "openinference.span.kind": "LLM", "llm.provider": "anthropic", "llm.system": "anthropic",
        "llm.model_name": "claude-haiku-4-5", "llm.token_count.prompt": TOKENS["input"],
        "llm.token_count.completion": TOKENS["output"], "llm.token_count.prompt_details.cache_read": TOKENS["cache_read"],
        "output.mime_type": "application/json", "output.value": langchain_result(message),
    }
    return attrs, Status.STATUS_CODE_OK, ""


def langchain_error(call_id: str | None) -> tuple[dict[str, Any], int, str]:
    """OpenInference's LangChain span of a failed call: LangChain's result keeps the error response
    (its request id too), and the error message quotes Anthropic's error body."""
    body: dict[str, Any] = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if call_id is not None:
        body["request_id"] = call_id
    message = {"content": "", "type": "ai", "response_metadata": {"body": body, "status_code": 529, **(
        {"request_id": call_id, "headers": {"request-id": call_id}} if call_id is not None else {})}}
    attrs = {"openinference.span.kind": "LLM", "llm.provider": "anthropic", "llm.system": "anthropic",
             "llm.model_name": "claude-haiku-4-5", "output.mime_type": "application/json",
             "output.value": langchain_result(message)}
    return attrs, Status.STATUS_CODE_ERROR, f"AnthropicOverloadedError('Error code: 529 - {body!r}')"


STYLES: dict[str, Callable[[str | None], tuple[dict[str, Any], int, str]]] = {
    "genai": genai, "openinference_body": openinference_body, "sdk_error": sdk_error, "library_error": library_error,
    "langchain_stream": langchain_stream, "langchain_error": langchain_error,
}
RESPONSE_ID_STYLES = {"genai", "openinference_body"}
REQUEST_ID_STYLES = {"sdk_error", "library_error", "langchain_error"}
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-", min_size=1, max_size=40)


def span(style: str, call_id: str | None, trace_id: bytes, span_id: bytes, start: int,
         parent: bytes = b"") -> Span:
    attrs, status, message = STYLES[style](call_id)
    out = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="call", start_time_unix_nano=start,
               end_time_unix_nano=start + 800_000_000)
    out.status.code = status
    out.status.message = message
    out.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    return out


def test_two_calls_that_look_alike_stay_two_records(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    store = SQLiteStore(tmp_path / "lookalikes.db")
    loop.run_until_complete(store.start())
    examples = iter(range(10**6))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        styles=st.tuples(st.sampled_from(sorted(STYLES)), st.sampled_from(sorted(STYLES))),
        call_ids=st.tuples(ids, ids) | st.tuples(st.none(), st.none()),
        same_trace=st.booleans(),
        siblings=st.booleans(),  # children of one parent span (an app or agent span around both)
        offsets=st.tuples(st.integers(0, 999_999_999), st.integers(0, 999_999_999)),  # within one second
    )
    def check(styles: tuple[str, str], call_ids: tuple[str | None, str | None], same_trace: bool,
              siblings: bool, offsets: tuple[int, int]) -> None:
        n = next(examples)
        traces = (n.to_bytes(8, "big") + b"\x01" * 8, n.to_bytes(8, "big") + (b"\x01" if same_trace else b"\x02") * 8)
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        for i in range(2):
            spans.append(span(styles[i], call_ids[i], traces[0] if siblings else traces[i],
                              bytes([0, 0, 0, 0, 0, 0, 1, i + 1]), START + offsets[i], b"\x07" * 8 if siblings else b""))
        converted = convert_traces(request, ConvertOptions(workspace=f"w{n}"), START)
        assert converted.rejected == 0 and len(converted.records) == 2
        written = loop.run_until_complete(store.write(converted.records))
        # The same call: the same provider-issued id, read from wherever each tracer keeps it (a
        # response id and a request id are never the same call's, as their keys say).
        # LangChain's streamed result names no provider id: never the same call as anything.
        same_kind = {styles[0], styles[1]} <= RESPONSE_ID_STYLES or {styles[0], styles[1]} <= REQUEST_ID_STYLES
        same_call = call_ids[0] is not None and call_ids[0] == call_ids[1] and same_kind
        assert len(written.inserted) == (1 if same_call else 2), [r.idempotency_key for r in converted.records]

    try:
        check()
        # and the same call described by two tracers, explicitly (random ids rarely coincide)
        # and a LangChain streamed span never joins anything, whatever its run id looks like.
        pairs = {("genai", "openinference_body"): 1, ("sdk_error", "library_error"): 1, ("sdk_error", "langchain_error"): 1,
                 ("langchain_stream", "genai"): 2, ("langchain_stream", "openinference_body"): 2}
        for pair, expected in pairs.items():
            request = ExportTraceServiceRequest()
            spans = request.resource_spans.add().scope_spans.add().spans
            for i, style in enumerate(pair):
                spans.append(span(style, "req_or_msg_1", bytes([9, i + 1]) + b"\x01" * 14, b"\x01" * 8, START))
            converted = convert_traces(request, ConvertOptions(workspace=f"pair-{'-'.join(pair)}"), START)
            assert len(loop.run_until_complete(store.write(converted.records)).inserted) == expected, pair
    finally:
        loop.run_until_complete(store.close())
        loop.close()
