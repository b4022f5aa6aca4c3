"""Property-based: over random attribute maps, conversion never raises (other than rejecting the
span with InvalidSpan), never invents a token count and never yields a negative one."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanmeter.convert import attributes as A
from spanmeter.convert.spans import ConvertOptions, convert_span
from spanmeter.convert.values import InvalidSpan
from spanmeter.pricing import Pricer
from tests.captures import any_value

TOKEN_NAMES = {
    "input_tokens": A.INPUT_TOKENS,
    "output_tokens": A.OUTPUT_TOKENS,
    "cache_read_tokens": A.CACHE_READ_TOKENS,
    "cache_write_tokens": A.CACHE_WRITE_TOKENS,
    "reasoning_tokens": A.REASONING_TOKENS,
}
NAMES = sorted({
    *A.OPERATION, *A.PROVIDER, *A.REQUEST_MODEL, *A.RESPONSE_MODEL, *A.RESPONSE_ID, *A.TOTAL_TOKENS,
    *A.REPORTED_COST, *A.CUSTOMER_ID, *A.USER_ID, *A.CONVERSATION_ID, *A.INVOCATION_PARAMETERS,
    A.OPENINFERENCE_SPAN_KIND, A.TRACELOOP_SPAN_KIND, A.EVENT_NAME, A.EVENT_FAMILY, A.METER, A.QUANTITY,
    A.IDEMPOTENCY_KEY, A.TAGS, "usage.meta.plan", "gen_ai.input.messages",
    *(n for names in TOKEN_NAMES.values() for n in names),
})
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["chat", "embeddings", "invoke_agent", "LLM", "CHAIN", "openai", "gpt-4o", "12", "-1", "activation"]),
    st.booleans(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))
noise = st.dictionaries(st.sampled_from(NAMES), values, max_size=12)
# Spans shaped like model calls, with well-typed token counts under random names, plus noise.
llm_shaped = st.builds(
    lambda marker, tokens, extra: {**marker, **tokens, **extra},
    st.sampled_from([
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini"},
        {"openinference.span.kind": "LLM", "llm.system": "anthropic", "llm.model_name": "claude-haiku-4-5"},
        {"llm.request.type": "embedding", "gen_ai.system": "openai", "gen_ai.request.model": "text-embedding-3-small"},
        {"gen_ai.system": "openai", "llm.request.model": "gpt-4o"},
    ]),
    st.dictionaries(st.sampled_from(sorted({n for names in TOKEN_NAMES.values() for n in names})),
                    st.integers(min_value=0, max_value=10**7), max_size=6),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
)
attribute_maps = st.one_of(noise, llm_shaped)


def span_of(attrs: dict[str, Any]) -> Span:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=10**18, end_time_unix_nano=10**18 + 5)
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    return span


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(attrs=attribute_maps, content=st.booleans())
def test_conversion_never_invents_or_negates_tokens(attrs: dict[str, Any], content: bool) -> None:
    try:
        records = convert_span(span_of(attrs), {}, ConvertOptions(content_capture=content), 0)
    except InvalidSpan as error:
        assert str(error)  # a rejection always says why
        return
    present = {k for k, v in attrs.items() if v is not None}
    for record in records:
        Pricer().price(record)  # pricing never raises either
        for field, names in TOKEN_NAMES.items():
            value = getattr(record, field)
            if value is None:
                continue
            assert isinstance(value, int) and value >= 0
            assert present & set(names), f"{field}={value} without any of {names}"
        if record.total_tokens is not None:
            assert record.total_tokens >= 0
            assert present & set(A.TOTAL_TOKENS + A.INPUT_TOKENS)
        if record.cost_usd is not None:
            assert record.cost_usd >= 0
        if record.kind == "meter":
            assert record.quantity is not None and record.quantity > 0
