"""LangChain (`langchain-openai` 1.8.1 on langchain-core 1.8.3) under each family's LangChain
instrumentation, with and without the family's openai instrumentation, exporting over OTLP/gRPC:

- OpenInference (`openinference-instrumentation-langchain` 0.1.80): a `ChatOpenAI` span per call,
  and with `openinference-instrumentation-openai` on, a `ChatCompletion` span of the same call too
  (another trace), both with the full counts and no response id attribute. spanmeter reads the
  provider's id from each one's output (LangChain's result: `llm_output.id`): one record per call.
  A streamed call's LangChain result names no provider id, nor does a failed OpenAI call: those
  stay two records (pinned below, documented).
- OpenLLMetry (`opentelemetry-instrumentation-langchain` 0.62.4): its LangChain spans suppress its
  openai spans of the same calls: one record per call either way.
- Langfuse 5.2.0's LangChain `CallbackHandler`: a `generation` span per call with Langfuse's own
  usage form (parts left out of `input` / `output`) and LangChain's `ls_provider` / `ls_model_name`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import RunningCollector
from tests.e2e.conftest import (
    DriverRun,
    assert_call_record,
    assert_failed_call_record,
    describe,
    run_driver,
    write_capture,
)
from tests.fakes.llm_provider import FakeProvider

RUNS = {  # name -> (family, openai instrumentation on)
    "openinference": ("openinference", False),
    "openinference+openai": ("openinference", True),
    "openllmetry": ("openllmetry", False),
    "openllmetry+openai": ("openllmetry", True),
    "langfuse": ("langfuse", False),  # Langfuse's LangChain CallbackHandler
}


@pytest.fixture(scope="module")
def runs(e2e_collector: RunningCollector, fake: FakeProvider) -> dict[str, DriverRun]:
    done = {
        name: run_driver("langchain_app", e2e_collector, fake, service=f"e2e-langchain-{name}", suites="langchain",
                         env={"LANGCHAIN_E2E_FAMILY": family, "LANGCHAIN_E2E_WITH_OPENAI": str(with_openai).lower()})
        for name, (family, with_openai) in RUNS.items()
    }
    packages = done["openinference+openai"].report["packages"]
    write_capture(done["openinference+openai"],
                  f"langchain-{packages['langchain-core']}-openinference-{packages['openinference-instrumentation-langchain']}"
                  "-with-openai")
    write_capture(done["openllmetry+openai"],
                  f"langchain-{packages['langchain-core']}-openllmetry-{packages['opentelemetry-instrumentation-langchain']}"
                  "-with-openai")
    write_capture(done["langfuse"], f"langchain-{packages['langchain-core']}-langfuse-{packages['langfuse']}")
    return done


# Token parts on the record: OpenInference reports cached and reasoning tokens, OpenLLMetry's
# LangChain spans cached ones only.
REPORTS = {"openinference": ("cache_read", "reasoning"), "openllmetry": ("cache_read",),
           "langfuse": ("cache_read", "reasoning")}


@pytest.mark.parametrize("name", list(RUNS))
def test_chat_is_one_exact_record(runs: dict[str, DriverRun], name: str) -> None:
    run = runs[name]
    record, exchange = run.record("openai.chat")
    # Langfuse's spans keep no provider id (its usage_details, Langfuse's own form, are summed back).
    assert_call_record(record, exchange, reports=REPORTS[RUNS[name][0]], response_id=name != "langfuse")
    if name == "openinference+openai":
        scopes = {s["scope"] for s in run.report["spans"] if s["name"] in ("ChatOpenAI", "ChatCompletion")}
        assert scopes == {"openinference.instrumentation.langchain", "openinference.instrumentation.openai"}


@pytest.mark.parametrize("label", ["openai.chat.stream_usage", "openai.chat.stream_in_app_span"])
@pytest.mark.parametrize("name", ["openinference", "openllmetry", "openllmetry+openai", "langfuse"])
def test_stream_is_one_exact_record(runs: dict[str, DriverRun], name: str, label: str) -> None:
    record, exchange = runs[name].record(label)
    # LangChain names the requested model on a streamed result (its chunks carry no other).
    assert record.response_model in (exchange.model, exchange.response_model)
    record.response_model = exchange.response_model
    assert_call_record(record, exchange, reports=REPORTS[RUNS[name][0]], response_id=False)


@pytest.mark.parametrize("name", ["openinference", "openllmetry", "openllmetry+openai", "langfuse"])
def test_failed_call_is_one_error_record(runs: dict[str, DriverRun], name: str) -> None:
    assert_failed_call_record(runs[name], "openai.chat.error")


@pytest.mark.parametrize("name", ["openinference+openai", "openllmetry+openai"])
def test_embeddings_are_one_record(runs: dict[str, DriverRun], name: str) -> None:
    record, exchange = runs[name].record("openai.embeddings")
    # OpenLLMetry's openai spans put a 0 cache read on embeddings.
    assert_call_record(record, exchange, reports=("cache_read",) if "openllmetry" in name else (), response_id=False)


@pytest.mark.parametrize("name", ["openinference", "openllmetry", "langfuse"])
def test_langchain_instrumentation_alone_has_no_embedding_span(runs: dict[str, DriverRun], name: str) -> None:
    """Known limit: no LangChain instrumentation (nor Langfuse's handler) traces an OpenAIEmbeddings
    call (LangChain runs embeddings without callbacks): no span reaches spanmeter, so no record. The
    family's openai instrumentation covers it."""
    run = runs[name]
    call = next(c for c in run.report["calls"] if c["label"] == "openai.embeddings")
    assert call["error"] is None and call["span_ids"] == []
    assert run.records_for(run.exchange("openai.embeddings")) == []


def call_spans(run: DriverRun, label: str) -> dict[str, dict[str, Any]]:
    """The spans finished during a call, by the last part of their scope ("langchain", "openai", or
    the app's own "spanmeter-e2e-app")."""
    call = next(c for c in run.report["calls"] if c["label"] == label)
    spans = [s for s in run.report["spans"] if s["span_id"] in call["span_ids"]]
    return {s["scope"].rsplit(".", 1)[-1]: s for s in spans}


def test_openinference_with_openai_stream_and_failure_stay_two_records(runs: dict[str, DriverRun]) -> None:
    """Known limit: the two spans of a streamed or failed call share no provider id and no trace, so
    nothing proves they are one call. Both copies carry the same exact counts; a fix upstream (a
    provider id in LangChain's result, or the openai span under the LangChain span) shows here."""
    run = runs["openinference+openai"]
    stream = run.records_for(run.exchange("openai.chat.stream_usage"))
    assert len(stream) == 2, [describe(r) for r in stream]
    assert {(r.input_tokens, r.output_tokens, r.cost_usd) for r in stream} == {
        (2100, 310, stream[0].cost_usd)}
    failed = run.records_for(run.exchange("openai.chat.error"))
    assert len(failed) == 2 and all(r.status == "error" and r.cost_usd is None for r in failed)

    for label in ("openai.chat.stream_usage", "openai.chat.error"):
        spans = call_spans(run, label)
        assert sorted(spans) == ["langchain", "openai"], run.span_summary()
        # Two traces, neither span a parent: OpenInference's LangChain tracer never makes its span
        # the current one, so the openai span cannot be its child.
        assert spans["langchain"]["trace_id"] != spans["openai"]["trace_id"]
        assert spans["langchain"]["parent_span_id"] is None and spans["openai"]["parent_span_id"] is None
    # Under an app span both are its children: siblings, as two different calls of it would be.
    in_app = run.records_for(run.exchange("openai.chat.stream_in_app_span"))
    assert len(in_app) == 2, [describe(r) for r in in_app]
    spans = call_spans(run, "openai.chat.stream_in_app_span")
    assert sorted(spans) == ["langchain", "openai", "spanmeter-e2e-app"], run.span_summary()
    app = spans["spanmeter-e2e-app"]
    assert spans["langchain"]["parent_span_id"] == spans["openai"]["parent_span_id"] == app["span_id"]

    # Stream: the openai span records the provider's id (the chunks' `id`); LangChain's streamed
    # result has no llm_output, and its message id is LangChain's own run id.
    spans = call_spans(run, "openai.chat.stream_usage")
    exchange = run.exchange("openai.chat.stream_usage")
    assert json.loads(spans["openai"]["attributes"]["output.value"])["id"] == exchange.response_id
    result = json.loads(spans["langchain"]["attributes"]["output.value"])
    assert result["llm_output"] is None
    assert result["generations"][0][0]["message"]["kwargs"]["id"].startswith("lc_run--")
    assert exchange.response_id not in json.dumps(spans["langchain"])

    # Failure: LangChain's result keeps the provider's request id (the x-request-id header), but the
    # openai span's exception event holds only the error's type and message, which do not name it.
    spans = call_spans(run, "openai.chat.error")
    metadata = json.loads(spans["langchain"]["attributes"]["output.value"])["generations"][0][0]["message"][
        "kwargs"]["response_metadata"]
    assert metadata["request_id"] == metadata["headers"]["x-request-id"]
    assert metadata["request_id"] not in json.dumps(spans["openai"])
    assert [e["name"] for e in spans["openai"]["events"]] == ["exception"]
