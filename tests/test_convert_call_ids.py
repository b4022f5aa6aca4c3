"""Reading the provider's ids of a call where a tracer keeps them without gen_ai.response.id
(convert/call_ids.py): only the response's own top-level id, only from JSON, bounded; a request id
only from a failed call's error."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert.call_ids import MAX_BODY_PARSED, request_id_from_error, response_id_from_body

ANTHROPIC_BODY = json.dumps({"id": "msg_01", "type": "message", "content": [{"type": "tool_use", "id": "toolu_9"}]})


def langchain_result(*metadata_ids: str | None, llm_output_id: str | None = None, run_id: str = "lc_run--1") -> str:
    """A LangChain LLMResult as OpenInference's LangChain instrumentation records it."""
    generations = [[{"text": "hi", "type": "ChatGeneration", "message": {"lc": 1, "type": "constructor", "kwargs": {
        "content": "hi", "id": run_id, "response_metadata": {} if rid is None else {"id": rid}}}}] for rid in metadata_ids]
    return json.dumps({"generations": generations,
                       "llm_output": None if llm_output_id is None else {"id": llm_output_id}, "type": "LLMResult"})


@pytest.mark.parametrize(("body", "mime", "expected"), [
    (ANTHROPIC_BODY, "application/json", "msg_01"),
    ('{"choices": [{"id": "nested"}], "id": "chatcmpl-7", "usage": {}}', "application/json", "chatcmpl-7"),
    ('  {\n "id" : "resp_1"}', "application/json", "resp_1"),
    (ANTHROPIC_BODY, "text/plain", None),  # only a JSON body is the provider's answer
    (ANTHROPIC_BODY, None, None),
    ('{"choices": [{"id": "nested"}]}', "application/json", None),  # never a nested id
    ('{"id": 42}', "application/json", None),
    ('{"id": ""}', "application/json", None),
    ("[1, 2]", "application/json", None),
    ('{"id": "msg_01"', "application/json", "msg_01"),  # truncated by the tracer: the leading id is whole
    ('{"data": [], "id": "x"', "application/json", None),  # truncated, id not first: not parsed
    ("Hello there", "application/json", None),
    (None, "application/json", None),
    # LangChain's result: the provider's id, never LangChain's own run id
    (langchain_result("chatcmpl-1", llm_output_id="chatcmpl-1"), "application/json", "chatcmpl-1"),
    (langchain_result("chatcmpl-2"), "application/json", "chatcmpl-2"),
    (langchain_result(None), "application/json", None),  # a streamed result names no provider id
    (langchain_result("chatcmpl-3", "chatcmpl-4"), "application/json", None),  # two generations: not one call
])
def test_response_id_from_body(body: str | None, mime: str | None, expected: str | None) -> None:
    assert response_id_from_body(body, mime) == expected


def test_a_large_body_is_read_only_for_a_leading_id() -> None:
    padding = "x" * MAX_BODY_PARSED
    assert response_id_from_body(json.dumps({"id": "msg_big", "pad": padding}), "application/json") == "msg_big"
    assert response_id_from_body(json.dumps({"pad": padding, "id": "msg_big"}), "application/json") is None


def error_span(message: str = "", exception_message: str | None = None, code: int = Status.STATUS_CODE_ERROR) -> Span:
    span = Span()
    span.status.code = code
    span.status.message = message
    if exception_message is not None:
        event = span.events.add(name="exception")
        event.attributes.add(key="exception.message").value.string_value = exception_message
    return span


ANTHROPIC_ERROR = ("Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': "
                   "'Overloaded'}, 'request_id': 'req_011CSHoEeqs5C3K2XoWX5PZB'}")


def test_request_id_from_the_error_message_or_the_exception_event() -> None:
    assert request_id_from_error(error_span(ANTHROPIC_ERROR)) == "req_011CSHoEeqs5C3K2XoWX5PZB"
    assert request_id_from_error(error_span("boom", ANTHROPIC_ERROR)) == "req_011CSHoEeqs5C3K2XoWX5PZB"
    as_json = 'Error: {"type":"error","error":{"type":"api_error"},"request_id":"req_2"}'
    assert request_id_from_error(error_span(as_json)) == "req_2"


def test_no_request_id_without_an_error_or_one_named_in_it() -> None:
    assert request_id_from_error(error_span(ANTHROPIC_ERROR, code=Status.STATUS_CODE_OK)) is None
    assert request_id_from_error(error_span("Error code: 400 - fake error for model 'error-model'")) is None
    # Only a request_id key with a plain id value counts (not prose that mentions one).
    assert request_id_from_error(error_span("see request_id in the logs")) is None
