"""Pydantic Logfire's model-call spans (`logfire.instrument_openai()` / `instrument_anthropic()`).

A streamed call is two spans under Logfire, in two traces: the request span (`Chat Completion
with ...` / `Message with ...`), which ends when the stream is returned, with no usage, no
response id and the request model as its `gen_ai.response.model`; and the `streaming response
from ... took ...s` span (`logfire.span_type` = `log`), sent when the stream is consumed, with the
usage, the response id and the model that answered. The second one is the call's record; the
first one is not a call of its own (`is_stream_request`).

A request span that failed is kept (it is the failed call's record), as is one with usage or a
response id (a call that was not streamed). A stream the application closes early still gets its
`streaming response` span once at least one chunk was read (Logfire sends it when its iterator is
closed or garbage-collected): one record with what arrived (OpenAI's usage comes in the last chunk,
so none; Anthropic's first event has the input counts and a running output count); a stream the
provider breaks with an in-stream error is that span with status ERROR: one error record of what
arrived. A stream closed before its first chunk gets none, and its request span looks the same
as that of every stream that was read, so it leaves no record.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert import attributes as A

CALL_SCOPES: Final = frozenset({"logfire.openai", "logfire.anthropic"})
SPAN_TYPE: Final = "logfire.span_type"
# What only the answer gives: a request span with any of these is a whole call.
_ANSWER_NAMES: Final = frozenset({*A.RESPONSE_ID, *A.INPUT_TOKENS, *A.OUTPUT_TOKENS})


def is_stream_request(span: Span) -> bool:
    """The request half of a streamed call (its `streaming response` span is the record)."""
    if span.status.code == Status.STATUS_CODE_ERROR:
        return False
    request = False
    for kv in span.attributes:
        if kv.key in _ANSWER_NAMES:
            return False
        if kv.key == SPAN_TYPE:
            request = kv.value.string_value == "span"
    return request
