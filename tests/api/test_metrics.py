"""/metrics names every counter the operators need, and the queue-depth gauge is live."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Api
from tests.otlp_helpers import json_request, llm_raw_attrs, raw_span, s

EXPECTED = {
    "spanmeter_spans_received",
    "spanmeter_records_stored",
    "spanmeter_duplicates",
    "spanmeter_conflicts",
    "spanmeter_rejected_spans",
    "spanmeter_unknown_model_records",
    "spanmeter_write_seconds",
    "spanmeter_write_queue_records",
    "spanmeter_auth_failures",
    "spanmeter_rate_limited",
}


def test_metrics_after_ingest(api: Api) -> None:
    body = json_request([
        raw_span(1, llm_raw_attrs()),
        raw_span(2, llm_raw_attrs(**{"gen_ai.response.model": s("no-such-model-xyz"),
                                     "gen_ai.request.model": s("no-such-model-xyz")})),
        raw_span(1, llm_raw_attrs()),  # the same span again: a duplicate
    ])  # fmt: skip
    response = httpx.post(
        f"{api.running.http_url}/v1/traces", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    text = httpx.get(f"{api.running.http_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert EXPECTED <= set(families)
    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value for f in families.values() for x in f.samples
    }
    assert samples[("spanmeter_spans_received_total", (("transport", "http"),))] == 3
    assert samples[("spanmeter_records_stored_total", (("kind", "llm"),))] == 2
    assert samples[("spanmeter_duplicates_total", ())] == 1
    assert samples[("spanmeter_unknown_model_records_total", ())] == 1
    assert samples[("spanmeter_write_seconds_count", ())] == 1
    assert samples[("spanmeter_write_queue_records", ())] == 0
    api.store.writer.queue._queued = 7  # the gauge reads the store's queue on every scrape
    assert api.running.metric("spanmeter_write_queue_records") == 7
    api.store.writer.queue._queued = 0
