"""A fake LLM provider (OpenAI, Anthropic, Gemini and AWS Bedrock HTTP APIs): what `spanmeter
demo`, the examples and the tests call instead of the real services.

Standard library only, so it runs inside any virtual environment. It serves on ``127.0.0.1`` on an ephemeral port, in a
background thread, and answers deterministically: the token usage of every answer comes from a
table keyed by model (``usage=``), else from a per-API default (``DEFAULT_USAGE``).

Endpoints
---------
OpenAI (point the SDK at ``fp.openai_base_url``, which ends in ``/v1``):

- ``POST /v1/chat/completions``: a ``chat.completion``; with ``"stream": true`` an SSE stream of
  ``chat.completion.chunk`` events ending in ``data: [DONE]``; with
  ``"stream_options": {"include_usage": true}`` every chunk carries ``"usage": null`` and one last
  chunk with ``"choices": []`` carries the usage (as the real API does).
- ``POST /v1/embeddings``: one embedding per input (float list, or base64 float32 when
  ``"encoding_format": "base64"``, which the ``openai`` SDK asks for by default).
- ``POST /v1/responses``: a non-streaming Responses API ``response`` object.

Anthropic (point the SDK at ``fp.base_url``; the SDK adds ``/v1`` itself):

- ``POST /v1/messages``: a ``message``; with ``"stream": true`` the SSE sequence
  ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``...,
  ``content_block_stop``, ``message_delta``, ``message_stop``. ``message_start`` carries the
  input/cache counts and ``output_tokens: 1``; ``message_delta`` carries the final, cumulative
  ``output_tokens`` (the documented shape).

AWS Bedrock Runtime (give ``boto3.client("bedrock-runtime", endpoint_url=fp.base_url, ...)``):

- ``POST /model/{modelId}/converse``: a Converse response (``output.message``, ``stopReason``,
  ``usage``, ``metrics``);
- ``POST /model/{modelId}/converse-stream``: the same as an AWS event stream
  (``application/vnd.amazon.eventstream``): ``messageStart``, ``contentBlockDelta``...,
  ``contentBlockStop``, ``messageStop``, ``metadata`` (with the usage).

Gemini API (``genai.Client(api_key=..., http_options={"base_url": fp.base_url})``):

- ``POST /v1beta/models/{model}:generateContent`` (or ``/v1/...``): a ``GenerateContentResponse`` (``candidates``,
  ``usageMetadata``, ``modelVersion``, ``responseId``);
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``: the same as SSE chunks, each
  with ``usageMetadata`` (the prompt count on every chunk, the output counts on the last).

Usage semantics
---------------
The table holds :class:`Usage` in the GenAI-conventions (inclusive) form: ``input_tokens``
*includes* the cache read and cache write tokens, ``output_tokens`` *includes* the reasoning
tokens. Each API renders it in its own wire form:

- OpenAI chat: ``prompt_tokens = input_tokens`` (OpenAI's prompt count includes cached tokens),
  ``completion_tokens = output_tokens``, ``total_tokens`` = their sum,
  ``prompt_tokens_details.cached_tokens = cache_read_tokens``,
  ``completion_tokens_details.reasoning_tokens = reasoning_tokens`` (OpenAI has no cache write).
- OpenAI embeddings: ``prompt_tokens = total_tokens = input_tokens``.
- OpenAI responses: ``input_tokens``, ``output_tokens``, ``total_tokens``,
  ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``.
- Anthropic: ``input_tokens = input_tokens - cache_read_tokens - cache_write_tokens`` (Anthropic's
  count EXCLUDES cache tokens), ``output_tokens``, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``.
- Gemini: ``promptTokenCount = input_tokens`` (includes ``cachedContentTokenCount``),
  ``candidatesTokenCount = output_tokens - reasoning_tokens`` (EXCLUDES ``thoughtsTokenCount``),
  ``totalTokenCount`` = all of them.
- Bedrock Converse: ``inputTokens`` EXCLUDES the cache tokens too, ``cacheReadInputTokens``,
  ``cacheWriteInputTokens``, ``outputTokens``, ``totalTokens`` = all of them.

Errors
------
A request whose model is a key of ``ERROR_MODELS`` (``"error-model"`` → 400,
``"rate-limit-model"`` → 429 with ``retry-after: 0``, ``"server-error-model"`` → 500,
``"overloaded-model"`` → 529) is answered with that status and the provider's error JSON
(OpenAI ``{"error": {"message", "type", "param", "code"}}`` and an ``x-request-id`` header;
Anthropic ``{"type": "error", "error": {"type", "message"}, "request_id"}`` and the same id in
the ``request-id`` header, as the real APIs answer). Give the SDK ``max_retries=0`` or it retries
429 and 5xx answers. A streamed OpenAI chat or Anthropic messages request whose model starts with
``MIDSTREAM_ERROR_PREFIX`` (``"midstream-error"``) is answered 200 and fails after its first
content chunk, with the error the real APIs send inside a stream (OpenAI: a ``data: {"error":
{...}}`` chunk; Anthropic: an ``event: error`` with ``{"type": "error", "error": {"type":
"overloaded_error", ...}}``), and the stream ends there. Unknown paths get 404, bodies that are not JSON objects get 400.

API
---
::

    from spanmeter.demo.fake_provider import FakeProvider, Usage

    with FakeProvider(usage={"gpt-4o-mini": Usage(input_tokens=1300, output_tokens=250,
                                                  cache_read_tokens=1024, reasoning_tokens=192)},
                      response_models={"gpt-4o-mini": "gpt-4o-mini-2024-07-18"}) as fp:
        client = openai.OpenAI(base_url=fp.openai_base_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        ex = fp.exchanges[-1]          # what the server got and answered (an Exchange)
        ex.api                         # "openai.chat" | "openai.embeddings" | "openai.responses"
                                       # | "anthropic.messages"
        ex.request                     # the parsed JSON request body
        ex.status, ex.stream           # 200, False
        ex.usage                       # the Usage (inclusive form), None for errors
        ex.wire_usage                  # the usage dict exactly as sent on the wire
        ex.response_id, ex.response_model

- ``FakeProvider(usage=None, response_models=None, host="127.0.0.1", port=0)``; also usable
  without ``with``: ``fp.start()`` / ``fp.stop()`` (``stop`` is safe to call twice or unstarted).
- ``fp.base_url`` (``http://127.0.0.1:PORT``), ``fp.openai_base_url`` (``.../v1``),
  ``fp.anthropic_base_url`` (same as ``base_url``), ``fp.port``.
- ``fp.set_usage(model, usage)``, ``fp.usage_for(api, model)``, ``fp.exchanges`` (a copy, in
  arrival order), ``fp.clear()``.

Response ids are deterministic per server: ``chatcmpl-fake-0001``, ``msg_fake_0002``,
``resp_fake_0003``, ... (one counter for all APIs). A response's model is
``response_models.get(request model, request model)``.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_USAGE",
    "ERROR_MODELS",
    "Exchange",
    "FakeProvider",
    "Usage",
]

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Token counts in the inclusive GenAI form (see the module docstring)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if min(self.input_tokens, self.output_tokens, self.cache_read_tokens,
               self.cache_write_tokens, self.reasoning_tokens) < 0:
            raise ValueError(f"token counts must be >= 0: {self}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(f"cache tokens exceed input_tokens (inclusive form): {self}")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(f"reasoning tokens exceed output_tokens (inclusive form): {self}")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens that were neither read from nor written to the cache (Anthropic's count)."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


#: Defaults per API when the model is not in the usage table. Distinct numbers on purpose, so a
#: span's count tells which parts were added up (e.g. Anthropic: 17 uncached, 1217 inclusive).
DEFAULT_USAGE: Final[Mapping[str, Usage]] = {
    "openai.chat": Usage(input_tokens=1300, output_tokens=250, cache_read_tokens=1024,
                         reasoning_tokens=192),
    "openai.responses": Usage(input_tokens=1300, output_tokens=250, cache_read_tokens=1024,
                              reasoning_tokens=192),
    "openai.embeddings": Usage(input_tokens=8),
    "anthropic.messages": Usage(input_tokens=1217, output_tokens=42, cache_read_tokens=1000,
                                cache_write_tokens=200),
    "google.generate_content": Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=800,
                                     reasoning_tokens=120),
    "aws.converse": Usage(input_tokens=438, output_tokens=64, cache_read_tokens=128),
    "aws.converse_stream": Usage(input_tokens=438, output_tokens=64, cache_read_tokens=128),
}

#: Models that make the server answer with an error: model → HTTP status.
ERROR_MODELS: Final[Mapping[str, int]] = {
    "error-model": 400,
    "rate-limit-model": 429,
    "server-error-model": 500,
    "overloaded-model": 529,
}

MIDSTREAM_ERROR_PREFIX: Final = "midstream-error"
_OPENAI_MIDSTREAM_ERROR: Final = {"error": {"message": "The server had an error while processing your request.",
                                            "type": "server_error", "param": None, "code": None}}
_ANTHROPIC_MIDSTREAM_ERROR: Final = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

_OPENAI_ERRORS: Final[Mapping[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", "invalid_value"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    529: ("server_error", None),
}
_ANTHROPIC_ERRORS: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_REPLY_TEXT: Final = "Hello from the fake provider."
_GEMINI_PATH: Final = re.compile(r"^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent)$")
_GEMINI_ERRORS: Final[Mapping[int, tuple[int, str]]] = {
    400: (400, "INVALID_ARGUMENT"),
    429: (429, "RESOURCE_EXHAUSTED"),
    500: (500, "INTERNAL"),
    529: (503, "UNAVAILABLE"),
}
_BEDROCK_PATH: Final = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")
# ERROR_MODELS' status -> Bedrock's answer (status, x-amzn-ErrorType); Bedrock has no 529.
_BEDROCK_ERRORS: Final[Mapping[int, tuple[int, str]]] = {
    400: (400, "ValidationException"),
    429: (429, "ThrottlingException"),
    500: (500, "InternalServerException"),
    529: (503, "ServiceUnavailableException"),
}
_EMBEDDING_DIM: Final = 8


@dataclass
class Exchange:
    """One request the server got, and what it answered."""

    api: str
    method: str
    path: str
    headers: dict[str, str]
    request: JsonObject
    status: int
    stream: bool = False
    model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    usage: Usage | None = None
    wire_usage: JsonObject | None = None
    response: JsonObject | None = None
    events: list[JsonObject] = field(default_factory=list)
    """For streams: the JSON payload of every SSE event sent, in order."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    provider: FakeProvider


class FakeProvider:
    """A fake OpenAI + Anthropic server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        usage: Mapping[str, Usage] | None = None,
        response_models: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._usage: dict[str, Usage] = dict(usage or {})
        self._response_models: dict[str, str] = dict(response_models or {})
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.provider = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-llm-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    # -- configuration and records ---------------------------------------------------------
    def set_usage(self, model: str, usage: Usage) -> None:
        with self._lock:
            self._usage[model] = usage

    def usage_for(self, api: str, model: str) -> Usage:
        with self._lock:
            found = self._usage.get(model)
        return found if found is not None else DEFAULT_USAGE[api]

    def response_model_for(self, model: str) -> str:
        return self._response_models.get(model, model)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def clear(self) -> None:
        with self._lock:
            self._exchanges.clear()

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._counter:04d}"


# -- wire forms of usage ---------------------------------------------------------------------
def _openai_chat_usage(u: Usage) -> JsonObject:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_embeddings_usage(u: Usage) -> JsonObject:
    return {"prompt_tokens": u.input_tokens, "total_tokens": u.input_tokens}


def _openai_responses_usage(u: Usage) -> JsonObject:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def _anthropic_usage(u: Usage) -> JsonObject:
    return {
        "input_tokens": u.uncached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
        "service_tier": "standard",
    }


def _gemini_usage(u: Usage) -> JsonObject:
    return {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
        "cachedContentTokenCount": u.cache_read_tokens,
        "thoughtsTokenCount": u.reasoning_tokens,
        "totalTokenCount": u.total_tokens,
    }


def _bedrock_usage(u: Usage) -> JsonObject:
    return {
        "inputTokens": u.uncached_input_tokens,
        "outputTokens": u.output_tokens,
        "totalTokens": u.total_tokens,
        "cacheReadInputTokens": u.cache_read_tokens,
        "cacheWriteInputTokens": u.cache_write_tokens,
    }


def _event_stream_message(event_type: str, payload: JsonObject) -> bytes:
    """One AWS event-stream message (prelude, string headers, JSON payload, CRC32s)."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"),
                        (":message-type", "event")):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def _words(text: str) -> Iterator[str]:
    parts = text.split(" ")
    for i, part in enumerate(parts):
        yield part if i == 0 else " " + part


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read fp.exchanges instead

    @property
    def _fp(self) -> FakeProvider:
        return self.server.provider

    # -- plumbing --------------------------------------------------------------------------
    def _send_json(self, status: int, body: JsonObject,
                   headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self, headers: Mapping[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _read_json(self) -> JsonObject | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _exchange(self, api: str, body: JsonObject, status: int, **kw: Any) -> Exchange:
        return Exchange(api=api, method=self.command, path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        request=body, status=status, **kw)

    # -- routing ---------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            "/v1/chat/completions": ("openai.chat", self._openai_chat),
            "/v1/embeddings": ("openai.embeddings", self._openai_embeddings),
            "/v1/responses": ("openai.responses", self._openai_responses),
            "/v1/messages": ("anthropic.messages", self._anthropic_messages),
        }
        route = routes.get(path)
        gemini = _GEMINI_PATH.match(path)
        if gemini is not None:
            self._gemini(urllib.parse.unquote(gemini.group(1)), gemini.group(2) == "streamGenerateContent")
            return
        bedrock = _BEDROCK_PATH.match(path)
        if bedrock is not None:
            self._bedrock(bedrock.group(1), bedrock.group(2) == "converse-stream")
            return
        body = self._read_json()
        if route is None:
            self._record_error("unknown", body or {}, 404, f"no such path: {path}")
            return
        api, handler = route
        if body is None:
            self._record_error(api, {}, 400, "request body is not a JSON object")
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._record_error(api, body, 400, "'model' is required")
            return
        status = ERROR_MODELS.get(model)
        if status is not None:
            self._record_error(api, body, status, f"fake error for model {model!r}")
            return
        handler(api, body, model)

    def do_GET(self) -> None:
        self._record_error("unknown", {}, 404, f"no such path: {self.path}")

    def _record_error(self, api: str, body: JsonObject, status: int, message: str) -> None:
        headers: dict[str, str] = {}
        if status == 429:
            headers["retry-after"] = "0"
        if api.startswith("anthropic"):
            err_type = _ANTHROPIC_ERRORS.get(status, "api_error")
            # The real API names the request in the body too (the SDK's error message quotes it).
            headers["request-id"] = self._fp._next_id("req_fake_")
            payload: JsonObject = {"type": "error",
                                   "error": {"type": err_type, "message": message},
                                   "request_id": headers["request-id"]}
        else:
            err_type, code = _OPENAI_ERRORS.get(status, ("server_error", None))
            payload = {"error": {"message": message, "type": err_type,
                                 "param": "model" if status == 400 else None, "code": code}}
            headers["x-request-id"] = self._fp._next_id("req_fake_")
        model = body.get("model")
        self._fp._record(self._exchange(api, body, status, stream=bool(body.get("stream")),
                                        model=model if isinstance(model, str) else None,
                                        response=payload))
        self._send_json(status, payload, headers)

    # -- OpenAI ------------------------------------------------------------------------------
    def _openai_chat(self, api: str, body: JsonObject, model: str) -> None:
        fp = self._fp
        usage = fp.usage_for(api, model)
        wire = _openai_chat_usage(usage)
        rid = fp._next_id("chatcmpl-fake-")
        rmodel = fp.response_model_for(model)
        created = int(time.time())
        headers = {"x-request-id": fp._next_id("req_fake_"), "openai-processing-ms": "1"}
        stream = bool(body.get("stream"))
        ex = self._exchange(api, body, 200, stream=stream, model=model, response_model=rmodel,
                            response_id=rid, usage=usage, wire_usage=wire)
        if not stream:
            ex.response = {
                "id": rid, "object": "chat.completion", "created": created, "model": rmodel,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": _REPLY_TEXT, "refusal": None,
                                "annotations": []},
                    "logprobs": None, "finish_reason": "stop",
                }],
                "usage": wire,
            }
            fp._record(ex)
            self._send_json(200, ex.response, headers)
            return
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))

        def chunk(choices: list[JsonObject], usage_value: JsonObject | None) -> JsonObject:
            c: JsonObject = {"id": rid, "object": "chat.completion.chunk", "created": created,
                             "model": rmodel, "system_fingerprint": "fp_fake",
                             "service_tier": "default", "choices": choices}
            if include_usage:
                c["usage"] = usage_value
            return c

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "",
                                                "refusal": None},
                          "logprobs": None, "finish_reason": None}], None)]
        for word in _words(_REPLY_TEXT):
            events.append(chunk([{"index": 0, "delta": {"content": word}, "logprobs": None,
                                  "finish_reason": None}], None))
        events.append(chunk([{"index": 0, "delta": {}, "logprobs": None,
                              "finish_reason": "stop"}], None))
        if include_usage:
            events.append(chunk([], wire))
        else:
            ex.wire_usage = None  # the client was told no usage
        midstream_error = model.startswith(MIDSTREAM_ERROR_PREFIX)
        if midstream_error:  # the role chunk, one content chunk, then the error; no usage sent
            events = [*events[:2], dict(_OPENAI_MIDSTREAM_ERROR)]
            ex.wire_usage = None
        ex.events = events
        fp._record(ex)
        self._start_sse(headers)
        for event in events:
            self._chunk(f"data: {json.dumps(event)}\n\n")
        if not midstream_error:
            self._chunk("data: [DONE]\n\n")
        self._end_chunks()

    def _openai_embeddings(self, api: str, body: JsonObject, model: str) -> None:
        fp = self._fp
        usage = fp.usage_for(api, model)
        wire = _openai_embeddings_usage(usage)
        raw_input = body.get("input")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i in range(len(inputs)):
            vector = [round(0.1 * (i + 1) + 0.01 * j, 4) for j in range(_EMBEDDING_DIM)]
            embedding: Any = (base64.b64encode(struct.pack(f"<{_EMBEDDING_DIM}f", *vector))
                              .decode() if as_base64 else vector)
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        rmodel = fp.response_model_for(model)
        response = {"object": "list", "data": data, "model": rmodel, "usage": wire}
        fp._record(self._exchange(api, body, 200, model=model, response_model=rmodel,
                                  usage=usage, wire_usage=wire, response=response))
        self._send_json(200, response, {"x-request-id": fp._next_id("req_fake_")})

    def _openai_responses(self, api: str, body: JsonObject, model: str) -> None:
        fp = self._fp
        if body.get("stream"):
            self._record_error(api, body, 400, "streaming is not implemented by the fake")
            return
        usage = fp.usage_for(api, model)
        wire = _openai_responses_usage(usage)
        rid = fp._next_id("resp_fake_")
        rmodel = fp.response_model_for(model)
        response = {
            "id": rid, "object": "response", "created_at": int(time.time()),
            "status": "completed", "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": None,
            "model": rmodel,
            "output": [{
                "type": "message", "id": "msg_" + rid, "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": _REPLY_TEXT, "annotations": []}],
            }],
            "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": wire,
            "user": None, "metadata": {},
        }
        fp._record(self._exchange(api, body, 200, model=model, response_model=rmodel,
                                  response_id=rid, usage=usage, wire_usage=wire,
                                  response=response))
        self._send_json(200, response, {"x-request-id": fp._next_id("req_fake_")})

    # -- Gemini --------------------------------------------------------------------------------
    def _gemini(self, model: str, stream: bool) -> None:
        fp = self._fp
        api = "google.generate_content"
        body = self._read_json() or {}
        if model in ERROR_MODELS:
            status, code = _GEMINI_ERRORS[ERROR_MODELS[model]]
            payload: JsonObject = {"error": {"code": status, "message": f"fake error for model {model!r}",
                                             "status": code}}
            fp._record(self._exchange(api, body, status, stream=stream, model=model, response=payload))
            self._send_json(status, payload)
            return
        usage = fp.usage_for(api, model)
        wire = _gemini_usage(usage)
        rid = fp._next_id("gemini-fake-")
        rmodel = fp.response_model_for(model)
        ex = self._exchange(api, body, 200, stream=stream, model=model, response_model=rmodel, response_id=rid,
                            usage=usage, wire_usage=wire)

        def answer(text: str, finish: str | None, usage_value: JsonObject) -> JsonObject:
            candidate: JsonObject = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": usage_value, "modelVersion": rmodel,
                    "responseId": rid}

        if not stream:
            ex.response = answer(_REPLY_TEXT, "STOP", wire)
            fp._record(ex)
            self._send_json(200, ex.response)
            return
        words = list(_words(_REPLY_TEXT))
        partial = {"promptTokenCount": usage.input_tokens, "totalTokenCount": usage.input_tokens}
        events = [answer(word, None, partial) for word in words[:-1]]
        events.append(answer(words[-1], "STOP", wire))
        ex.events = events
        fp._record(ex)
        self._start_sse({})
        for event in events:
            self._chunk(f"data: {json.dumps(event)}\r\n\r\n")
        self._end_chunks()

    # -- AWS Bedrock ---------------------------------------------------------------------------
    def _bedrock(self, quoted_model: str, stream: bool) -> None:
        fp = self._fp
        model = urllib.parse.unquote(quoted_model)
        api = "aws.converse_stream" if stream else "aws.converse"
        body = self._read_json()
        if body is None:
            body = {}
        request_id = fp._next_id("req-fake-")
        if model in ERROR_MODELS:
            status, error = _BEDROCK_ERRORS[ERROR_MODELS[model]]
            payload: JsonObject = {"message": f"fake error for model {model!r}"}
            fp._record(self._exchange(api, body, status, stream=stream, model=model, response=payload))
            self._send_json(status, payload, {"x-amzn-ErrorType": f"{error}:http://internal.amazon.com/coral/",
                                              "x-amzn-RequestId": request_id})
            return
        usage = fp.usage_for(api, model)
        wire = _bedrock_usage(usage)
        rmodel = fp.response_model_for(model)
        ex = self._exchange(api, body, 200, stream=stream, model=model, response_model=rmodel, usage=usage,
                            wire_usage=wire)
        headers = {"x-amzn-RequestId": request_id}
        if not stream:
            ex.response = {"output": {"message": {"role": "assistant", "content": [{"text": _REPLY_TEXT}]}},
                           "stopReason": "end_turn", "usage": wire, "metrics": {"latencyMs": 12}}
            fp._record(ex)
            self._send_json(200, ex.response, headers)
            return
        events: list[tuple[str, JsonObject]] = [("messageStart", {"role": "assistant"})]
        events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
                   for word in _words(_REPLY_TEXT)]
        events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"}),
                   ("metadata", {"usage": wire, "metrics": {"latencyMs": 12}})]
        ex.events = [{"type": name, **payload} for name, payload in events]
        fp._record(ex)
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        for name, payload in events:
            data = _event_stream_message(name, payload)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self._end_chunks()

    # -- Anthropic ---------------------------------------------------------------------------
    def _anthropic_messages(self, api: str, body: JsonObject, model: str) -> None:
        fp = self._fp
        usage = fp.usage_for(api, model)
        wire = _anthropic_usage(usage)
        rid = fp._next_id("msg_fake_")
        rmodel = fp.response_model_for(model)
        headers = {"request-id": fp._next_id("req_fake_")}
        stream = bool(body.get("stream"))
        ex = self._exchange(api, body, 200, stream=stream, model=model, response_model=rmodel,
                            response_id=rid, usage=usage, wire_usage=wire)
        if not stream:
            ex.response = {
                "id": rid, "type": "message", "role": "assistant", "model": rmodel,
                "content": [{"type": "text", "text": _REPLY_TEXT}],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": wire,
            }
            fp._record(ex)
            self._send_json(200, ex.response, headers)
            return
        start_usage = dict(wire, output_tokens=1)
        events: list[JsonObject] = [
            {"type": "message_start", "message": {
                "id": rid, "type": "message", "role": "assistant", "model": rmodel,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": start_usage}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
        ]
        for word in _words(_REPLY_TEXT):
            events.append({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": word}})
        events += [
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta",
             "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": usage.output_tokens}},
            {"type": "message_stop"},
        ]
        if model.startswith(MIDSTREAM_ERROR_PREFIX):  # message_start ... the first text delta, then the error
            events = [*events[:4], dict(_ANTHROPIC_MIDSTREAM_ERROR)]
            ex.wire_usage = start_usage  # all the usage sent
        ex.events = events
        fp._record(ex)
        self._start_sse(headers)
        for event in events:
            self._chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        self._end_chunks()


def main(argv: list[str] | None = None) -> None:
    """`python -m spanmeter.demo.fake_provider [--port N]`: serve until Ctrl-C (for examples/)."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI + Anthropic API on 127.0.0.1 (no key, no cost).")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port (default: 8099)")
    args = parser.parse_args(argv)
    with FakeProvider(port=args.port) as fake:
        print(f"OPENAI_BASE_URL={fake.openai_base_url}  ANTHROPIC_BASE_URL={fake.anthropic_base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
