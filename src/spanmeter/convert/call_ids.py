"""The provider's own ids of a model call, where a tracer keeps them without `gen_ai.response.id`.

Two tracers describing one call (e.g. an instrumentation library beside the anthropic SDK's own
tracing) must give one record: both spans need the same idempotency key, made from an id the
provider gave that call and no other. Some tracers keep that id only in other places:

- the response id inside the raw response body a tracer records as its output (OpenInference's
  default mode: `output.value` = the provider's JSON answer, `{"id": "msg_…", …}`), or inside the
  LangChain result OpenInference's LangChain instrumentation records there (`{"generations": …,
  "llm_output": {"id": "chatcmpl-…"}}`, or the one generation's `response_metadata.id`);
- the provider's request id (one per HTTP request): the anthropic SDK's tracing records the
  `request-id` header as `anthropic.request.id` on every span, and a failed call's error message
  (span status, `exception.message`) holds the Anthropic error body, `{…, 'request_id': 'req_…'}`.

Each is read only when the span has no response id attribute, and from a bounded prefix: these
are rare, slow-path reads, never made for a span that already names its response id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

# A raw response body larger than this is not parsed whole; its id is read only when it is the
# body's first member (how the openai and anthropic SDKs serialise their responses).
MAX_BODY_PARSED: Final = 64 * 1024
MAX_ERROR_SCANNED: Final = 8 * 1024
MAX_ID_CHARS: Final = 256
JSON_MIME_TYPE: Final = "application/json"
EXCEPTION_MESSAGE: Final = "exception.message"

_LEADING_ID: Final = re.compile(r'\s*\{\s*"id"\s*:\s*"([^"\\]{1,256})"')
# `request_id` as a key of the error body, as the SDK prints it (Python repr) or as JSON.
_ERROR_REQUEST_ID: Final = re.compile(r"""['"]request_id['"]\s*:\s*['"]([A-Za-z0-9_\-]{1,256})['"]""")


def response_id_from_body(body: object, mime_type: object) -> str | None:
    """The top-level `id` of a JSON response body, or None (not JSON, no string id, too large)."""
    if not isinstance(body, str) or mime_type != JSON_MIME_TYPE:
        return None
    leading = _LEADING_ID.match(body)
    if leading is not None:
        return leading.group(1)
    if len(body) > MAX_BODY_PARSED or not body.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    found = parsed.get("id")
    if found is None and "generations" in parsed:
        found = _langchain_result_id(parsed)
    return found if isinstance(found, str) and 0 < len(found) <= MAX_ID_CHARS else None


def _langchain_result_id(result: dict[str, object]) -> object:
    """The provider's id in a LangChain `LLMResult` of one call: `llm_output.id`, else the
    `response_metadata.id` of its one generation (a streamed result has neither)."""
    llm_output = result.get("llm_output")
    if isinstance(llm_output, dict) and isinstance(llm_output.get("id"), str):
        return llm_output["id"]
    generations = result.get("generations")
    if not (isinstance(generations, list) and len(generations) == 1 and isinstance(generations[0], list)
            and len(generations[0]) == 1 and isinstance(generations[0][0], dict)):
        return None
    message = generations[0][0].get("message")
    kwargs = message.get("kwargs") if isinstance(message, dict) else None
    metadata = kwargs.get("response_metadata") if isinstance(kwargs, dict) else None
    return metadata.get("id") if isinstance(metadata, dict) else None


def request_id_from_error(span: Span) -> str | None:
    """The provider request id quoted in a failed call's error (status message, exception events)."""
    if span.status.code != Status.STATUS_CODE_ERROR:
        return None
    for text in _error_texts(span):
        found = _ERROR_REQUEST_ID.search(text, 0, MAX_ERROR_SCANNED)
        if found is not None:
            return found.group(1)
    return None


def _error_texts(span: Span) -> Iterable[str]:
    if span.status.message:
        yield span.status.message
    for event in span.events:
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == EXCEPTION_MESSAGE and kv.value.string_value:
                    yield kv.value.string_value
