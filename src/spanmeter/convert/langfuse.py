"""The Langfuse SDK's model calls: its own attribute names, no `gen_ai.*` ones.

Langfuse (OpenTelemetry-based since its v3 SDK; scope `langfuse-sdk`) marks a model call with
`langfuse.observation.type` = `generation` (or `embedding`), names the model in
`langfuse.observation.model.name` (the model the provider answered with; the request model on a
failed call, which had no answer) and keeps the usage and cost as JSON strings:

- `langfuse.observation.usage_details`: what the integration got. The `langfuse.openai` drop-in
  passes the provider's raw usage through: OpenAI's `prompt_tokens` / `completion_tokens` /
  `total_tokens` with `prompt_tokens_details.cached_tokens` and
  `completion_tokens_details.reasoning_tokens` (inclusive counts), the Responses API's
  `input_tokens` / `output_tokens` with `*_tokens_details`, embeddings as `{"input": N}`.
  Anthropic's raw usage (`input_tokens` without the cache tokens, `cache_read_input_tokens`,
  `cache_creation_input_tokens`) is exclusive. Langfuse's own form (its LangChain handler, manual
  `usage_details`) is `input` / `output` / `total` plus parts named `input_<part>` /
  `output_<part>` that are NOT included in `input` / `output` (Langfuse sums the parts).
- `langfuse.observation.cost_details`: `{"input", "output", "total"}` in USD when the provider
  reported a cost (e.g. OpenRouter); the drop-in writes zeros on every failed call, so zero is
  no reported cost.

The provider and the request model: Langfuse's LangChain handler copies LangChain's metadata,
`langfuse.observation.metadata.ls_provider` / `.ls_model_name` (JSON strings: the provider and the
requested model). Otherwise the provider is the one genai-prices knows the model under, else the
drop-in's span name (`OpenAI-generation`, `OpenAI-embedding`); the request model is not named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanmeter.convert.attributes import LANGFUSE_COST_DETAILS as COST_DETAILS
from spanmeter.convert.attributes import LANGFUSE_USAGE_DETAILS as USAGE_DETAILS
from spanmeter.convert.values import MAX_COST_USD, MAX_TOKENS, InvalidSpan, as_decimal

# Observation types that are one model call, and the record type of each.
MODEL_CALL_TYPES: Final = {"generation": "chat", "embedding": "embeddings"}
MAX_DETAILS_CHARS: Final = 64 * 1024
# The drop-in names its spans "<provider>-generation" / "<provider>-embedding".
_SPAN_NAME_PROVIDERS: Final = {"openai": "openai", "azureopenai": "azure"}
LS_PROVIDER: Final = "langfuse.observation.metadata.ls_provider"
LS_MODEL_NAME: Final = "langfuse.observation.metadata.ls_model_name"
MAX_HINT_CHARS: Final = 256


@dataclass(slots=True, frozen=True)
class Counts:
    """Token counts read from `usage_details`; `exclusive`: input leaves the cache tokens out."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    exclusive: bool = False


def read_usage(value: Any) -> Counts:
    """The counts of a `usage_details` value; raises InvalidSpan naming what is wrong."""
    usage = _json_object(USAGE_DETAILS, value)
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI chat / embeddings, raw
        return Counts(
            _count(usage, "prompt_tokens"), _count(usage, "completion_tokens"), _count(usage, "total_tokens"),
            cache_read=_count(_details(usage, "prompt_tokens_details"), "cached_tokens", "prompt_tokens_details."),
            reasoning=_count(_details(usage, "completion_tokens_details"), "reasoning_tokens",
                             "completion_tokens_details."),
        )  # fmt: skip
    if "input_tokens" in usage or "output_tokens" in usage:
        if "input_tokens_details" in usage or "output_tokens_details" in usage:  # OpenAI Responses, raw
            return Counts(
                _count(usage, "input_tokens"), _count(usage, "output_tokens"), _count(usage, "total_tokens"),
                cache_read=_count(_details(usage, "input_tokens_details"), "cached_tokens", "input_tokens_details."),
                reasoning=_count(_details(usage, "output_tokens_details"), "reasoning_tokens",
                                 "output_tokens_details."),
            )  # fmt: skip
        # Anthropic, raw: input_tokens leaves out the cache reads and writes.
        return Counts(
            _count(usage, "input_tokens"), _count(usage, "output_tokens"), None,
            cache_read=_count(usage, "cache_read_input_tokens"),
            cache_write=_count(usage, "cache_creation_input_tokens"),
            exclusive=True,
        )  # fmt: skip
    return _langfuse_form(usage)


def _langfuse_form(usage: dict[str, Any]) -> Counts:
    """Langfuse's generic form: `input` / `output` plus parts summed into them here."""
    input_tokens, output_tokens = _count(usage, "input"), _count(usage, "output")
    cache_read = cache_write = reasoning = None
    input_parts = output_parts = 0
    for key in usage:
        # Langfuse's priority-tier counts are no sub-category of the input (its own handler skips them).
        if key in ("input", "output", "total") or "priority" in key:
            continue
        is_input = key.startswith("input_") or key in ("cache_read_input_tokens", "cache_creation_input_tokens")
        count = _count(usage, key) if is_input or key.startswith("output_") else None
        if count is None:
            continue  # not a token count (e.g. a cost)
        if is_input:
            input_parts += count
            if "cache_read" in key or "cached" in key:
                cache_read = (cache_read or 0) + count
            elif "cache_creation" in key or "cache_write" in key:
                cache_write = (cache_write or 0) + count
        elif key.startswith("output_"):
            output_parts += count
            if "reasoning" in key:
                reasoning = (reasoning or 0) + count
    if input_tokens is not None or input_parts:
        input_tokens = (input_tokens or 0) + input_parts
    if output_tokens is not None or output_parts:
        output_tokens = (output_tokens or 0) + output_parts
    total = _count(usage, "total")
    # A total of exclusive parts is the inclusive total too; one that disagrees is dropped (recomputed).
    if total is not None and input_tokens is not None and total != input_tokens + (output_tokens or 0):
        total = None
    return Counts(input_tokens, output_tokens, total, cache_read, cache_write, reasoning)


def read_cost(value: Any) -> Decimal | None:
    """The reported cost in USD (`total`, else the sum of the parts), None when zero or absent."""
    cost = _json_object(COST_DETAILS, value)
    if "total" in cost:
        total = as_decimal(f"{COST_DETAILS}.total", cost["total"], limit=MAX_COST_USD, positive=False)
    else:
        total = sum(
            (as_decimal(f"{COST_DETAILS}.{k}", v, limit=MAX_COST_USD, positive=False) for k, v in cost.items()),
            Decimal(0),
        )
    return total or None


def langchain_hints(span: Span) -> tuple[str | None, str | None]:
    """(provider, request model) from the LangChain metadata Langfuse's handler records, if any."""
    provider = model = None
    for kv in span.attributes:
        if kv.key == LS_PROVIDER:
            provider = _json_string(kv.value.string_value)
        elif kv.key == LS_MODEL_NAME:
            model = _json_string(kv.value.string_value)
    return provider, model


def _json_string(text: str) -> str | None:
    """A JSON-encoded string value (how Langfuse stores metadata), else None."""
    if not text.startswith('"') or len(text) > MAX_HINT_CHARS:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


def provider_from_span_name(name: str) -> str | None:
    prefix, _, kind = name.rpartition("-")
    return _SPAN_NAME_PROVIDERS.get(prefix.lower()) if kind in MODEL_CALL_TYPES else None


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, str):
        raise InvalidSpan(f"{name} must be a JSON object in a string, got {type(value).__name__}")
    if len(value) > MAX_DETAILS_CHARS:
        raise InvalidSpan(f"{name} is {len(value)} characters long; the limit is {MAX_DETAILS_CHARS}")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise InvalidSpan(f"{name} is not JSON: {value[:60]!r}") from None
    if not isinstance(parsed, dict):
        raise InvalidSpan(f"{name} must be a JSON object, got {value[:60]!r}")
    return parsed


def _details(usage: dict[str, Any], key: str) -> dict[str, Any]:
    found = usage.get(key)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise InvalidSpan(f"{USAGE_DETAILS}: {key} must be an object, got {found!r:.60}")
    return found


def _count(usage: dict[str, Any], key: str, prefix: str = "") -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise InvalidSpan(f"{USAGE_DETAILS}: {prefix}{key} must be a token count, got {value!r:.60}")
    return value
