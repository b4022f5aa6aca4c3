"""The fast path (convert/fast_path.py) is an optimisation only: whenever it answers, the general
path gives the very same records; and it does answer for the spans it was made for."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanmeter.convert import attributes as A
from spanmeter.convert.fast_path import fast_span
from spanmeter.convert.spans import ConvertOptions, general_span, resource_fields
from spanmeter.convert.values import Facts, InvalidSpan, extract
from tests.captures import any_value, load_calls

COUNT_FACTS = ("input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cache_write_tokens",
               "reasoning_tokens")
STRING_FACTS = ("operation", "provider", "request_model", "response_model", "response_id", "error_type",
                "message_id", "customer_id", "user_id", "conversation_id", "feature", "task_id")
COUNT_NAMES = sorted(A.FACTS[f][0] for f in COUNT_FACTS)
STRING_NAMES = sorted(A.FACTS[f][0] for f in STRING_FACTS)
OTHER_NAMES = ["gen_ai.system", "gen_ai.usage.prompt_tokens", "llm.request.type", "usage.event.name",
               "usage.idempotency_key", "usage.meta.plan", "gen_ai.usage.cost", "service.name",
               "openinference.span.kind", "server.address", "gen_ai.request.max_tokens", "http.method"]
# Where tracers keep a call's ids without gen_ai.response.id (convert/call_ids.py).
CALL_ID_ATTRIBUTES = [("output.value", '{"id": "msg_1", "usage": {}}'), ("output.value", '{"usage": {}}'),
                      ("output.mime_type", "application/json"), ("anthropic.request.id", "req_1")]
ERROR_MESSAGES = ["boom", "Error code: 500 - {'type': 'error', 'request_id': 'req_2'}"]
PROMPT = ("gen_ai.input.messages", '[{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]')
scalars = st.one_of(
    st.integers(min_value=-5, max_value=5000),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["chat", "CHAT", "embeddings", "invoke_agent", "openai", "gpt-4o", "", "x" * 5000]),
    st.booleans(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2))
# Mostly the names the fast path reads, with values of their kind, so that it answers often;
# sometimes other names, kinds and repeats, so that it must not.
valid = st.one_of(
    st.tuples(st.sampled_from(COUNT_NAMES), st.integers(min_value=0, max_value=3000)),
    st.tuples(st.sampled_from(STRING_NAMES), st.sampled_from(["resp-2", "globex", "claude-haiku-4-5", "c1"])),
    st.tuples(st.sampled_from(["server.address", "gen_ai.request.max_tokens", "http.method"]), values),
    st.just(PROMPT),
    st.sampled_from(CALL_ID_ATTRIBUTES),
)
attribute = st.one_of(
    valid,
    valid,
    valid,
    st.tuples(st.sampled_from(COUNT_NAMES), values),
    st.tuples(st.sampled_from(STRING_NAMES), values),
    st.tuples(st.sampled_from(OTHER_NAMES), values),
)
tokens = st.integers(min_value=0, max_value=3000)
model_calls = st.builds(
    lambda base, optional, extra: [*base.items(), *optional.items(), *extra],
    st.fixed_dictionaries({
        "gen_ai.operation.name": st.sampled_from(["chat", "embeddings", "invoke_agent", "Chat", "text_completion"]),
        "gen_ai.provider.name": st.sampled_from(["openai", "anthropic", "aws.bedrock", "x_ai", "unknown-co"]),
    }),
    st.fixed_dictionaries({}, optional={
        **{name: tokens for name in COUNT_NAMES},
        **{A.FACTS[fact][0]: st.sampled_from(["resp-3", "gpt-4o-mini", "u2", "c2"])
           for fact in ("request_model", "response_model", "response_id", "message_id", "customer_id", "error_type")},
        PROMPT[0]: st.just(PROMPT[1]),
    }),
    st.lists(attribute, max_size=3),
)
attribute_lists = st.one_of(st.lists(attribute, max_size=10), model_calls, model_calls)
resources = st.dictionaries(
    st.sampled_from(["service.name", "usage.customer.id", "usage.meta.region", "gen_ai.provider.name", "user.id"]),
    values, max_size=3,
)


VALID_IDS = (b"\x01" * 16, b"\x02" * 8)


def build(attrs: list[tuple[str, Any]], status: int, events: int, ids: tuple[bytes, bytes], start: int,
          message: str = "boom") -> Span:
    span = Span(trace_id=ids[0], span_id=ids[1], start_time_unix_nano=start, end_time_unix_nano=start + 2_500_000_000)
    span.status.code = status
    span.status.message = message if status == Status.STATUS_CODE_ERROR else ""
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs)
    for i in range(events):
        span.events.add(name="e", time_unix_nano=start + i).attributes.add(key="usage.event.name", value=any_value("X"))
    return span


def general(span: Span, resource: Facts, options: ConvertOptions, exclusive: bool) -> list[Any] | str:
    try:
        return general_span(span, resource, options, 7, exclusive, resource_fields(resource, options))
    except InvalidSpan as error:
        return f"rejected: {error}"


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    attrs=attribute_lists,
    resource_attrs=resources,
    status=st.sampled_from([Status.STATUS_CODE_UNSET, Status.STATUS_CODE_OK, Status.STATUS_CODE_ERROR]),
    events=st.sampled_from([0, 0, 0, 1]),
    ids=st.sampled_from([VALID_IDS, VALID_IDS, VALID_IDS, (b"\x00" * 16, b"\x02" * 8), (b"\x01" * 15, b"\x02" * 8)]),
    start=st.sampled_from([1_763_900_000_000_000_000, 1_763_900_000_000_000_000, 1_763_900_000_000_000_000, 0]),
    exclusive=st.booleans(),
    content=st.sampled_from([False, False, True]),
    message=st.sampled_from(ERROR_MESSAGES),
)
def test_fast_path_answers_only_what_the_general_path_would(
    attrs: list[tuple[str, Any]], resource_attrs: dict[str, Any], status: int, events: int,
    ids: tuple[bytes, bytes], start: int, exclusive: bool, content: bool, message: str,
) -> None:
    span = build(attrs, status, events, ids, start, message)
    resource = extract(KeyValue(key=k, value=any_value(v)) for k, v in resource_attrs.items())
    options = ConvertOptions(workspace="w", content_capture=content, max_field_chars=4096)
    fast = fast_span(span, resource, resource_fields(resource, options), options, 7, exclusive)
    if fast is not None:
        assert fast == general(span, resource, options, exclusive)


def test_the_common_semconv_spans_take_the_fast_path() -> None:
    """Captured spans of the current-conventions libraries: each model call, and each non-usage
    span, is converted by the fast path (else the optimisation has silently stopped applying)."""
    options = ConvertOptions()
    taken = total = 0
    for call in load_calls():
        if not call.library.startswith(("otel-openai-v2-2.4b0", "otel-genai-openai")):
            continue
        for span, _scope in call.spans:
            if any(kv.key.startswith(("gen_ai.usage.cache", "gen_ai.input", "gen_ai.output.messages"))
                   for kv in span.attributes):
                continue  # not read by the fast path
            total += 1
            taken += fast_span(span, {}, resource_fields({}, options), options, 1, False) is not None
    assert total >= 10
    assert taken == total


@pytest.mark.parametrize("value", [-1, 10**13, "12", 3.0, True])
def test_a_bad_token_count_goes_to_the_general_path_for_its_message(value: Any) -> None:
    span = build([("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                  ("gen_ai.usage.input_tokens", value)], Status.STATUS_CODE_OK, 0,
                 (b"\x01" * 16, b"\x02" * 8), 1_763_900_000_000_000_000)
    options = ConvertOptions()
    assert fast_span(span, {}, resource_fields({}, options), options, 1, False) is None


@pytest.mark.parametrize(("counts", "exclusive"), [
    ({"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 50}, True),
    ({"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 50}, False),
    ({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_creation.input_tokens": 50,
      "gen_ai.usage.total_tokens": 12}, False),
    ({"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 5,
      "gen_ai.usage.reasoning.output_tokens": 20}, False),
    ({"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 5, "gen_ai.usage.total_tokens": 99}, True),
])
def test_the_token_contract_is_the_same_on_both_paths(counts: dict[str, int], exclusive: bool) -> None:
    """Hand-picked cases the random search reaches only sometimes: exclusive scopes and parts
    larger than the whole."""
    span = build([("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "anthropic"), *counts.items()],
                 Status.STATUS_CODE_OK, 0, VALID_IDS, 1_763_900_000_000_000_000)
    options = ConvertOptions(workspace="w")
    fast = fast_span(span, {}, resource_fields({}, options), options, 7, exclusive)
    assert fast is not None and fast == general(span, {}, options, exclusive)


def test_attribute_names_are_remembered_within_a_bound_and_meta_names_stay_general(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fast path remembers how it classified each attribute name; an app sending ever new names
    # must not grow that memory without end, and a name must mean the same the second time.
    from spanmeter.convert import fast_path

    names = dict(fast_path._NAMES)
    monkeypatch.setattr(fast_path, "_NAMES", names)
    monkeypatch.setattr(fast_path, "_NAMES_LIMIT", len(names) + 5)
    options = ConvertOptions()
    call = [("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"), ("gen_ai.usage.input_tokens", 3)]
    for i in range(20):
        span = build([*call, (f"app.attribute_{i}", "x")], Status.STATUS_CODE_OK, 0, VALID_IDS, 1_763_900_000_000_000_000)
        assert fast_span(span, {}, resource_fields({}, options), options, 1, False) is not None
    assert len(names) == fast_path._NAMES_LIMIT
    meta = build([*call, ("usage.meta.plan", "pro")], Status.STATUS_CODE_OK, 0, VALID_IDS, 1_763_900_000_000_000_000)
    for _ in range(2):  # first classified, then remembered (or not, past the bound): general both times
        assert fast_span(meta, {}, resource_fields({}, options), options, 1, False) is None


@pytest.mark.parametrize(("extra", "status", "message", "fast", "key"), [
    # a response id attribute: the fast path keys by it, a raw body beside it is never read
    ([("gen_ai.response.id", "msg_1"), ("output.value", '{"id": "msg_1"}')], Status.STATUS_CODE_OK, "", True,
     "llm:anthropic:msg_1"),
    # no response id attribute: the body may hold it, so the general path reads it
    ([("output.value", '{"id": "msg_1"}'), ("output.mime_type", "application/json")], Status.STATUS_CODE_OK, "",
     False, "llm:anthropic:msg_1"),
    # the anthropic SDK's failed call: its request id attribute is the key, on the fast path
    ([("anthropic.request.id", "req_1"), ("error.type", "overloaded_error")], Status.STATUS_CODE_ERROR, "", True,
     "llm:anthropic:request/req_1"),
    ([("error.type", "overloaded_error")], Status.STATUS_CODE_ERROR,
     "Error code: 529 - {'type': 'error', 'request_id': 'req_1'}", False, "llm:anthropic:request/req_1"),
    ([("error.type", "BadRequestError")], Status.STATUS_CODE_ERROR, "Error code: 400 - bad model", True, None),
])
def test_call_ids_outside_response_id_attributes(
    extra: list[tuple[str, Any]], status: int, message: str, fast: bool, key: str | None
) -> None:
    span = build([("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "anthropic"), *extra],
                 status, 0, VALID_IDS, 1_763_900_000_000_000_000, message)
    options = ConvertOptions(workspace="w")
    answered = fast_span(span, {}, resource_fields({}, options), options, 7, False)
    assert (answered is not None) == fast
    records = general(span, {}, options, False)
    assert isinstance(records, list) and len(records) == 1
    assert answered is None or answered == records
    assert records[0].idempotency_key == (key or f"{VALID_IDS[0].hex()}:{VALID_IDS[1].hex()}")
