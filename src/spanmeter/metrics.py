"""The collector's own counters, exposed at /metrics in the Prometheus text format.

Each app has its own registry, so several collectors can run in one process (tests).
Counted per item, never logged per item.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.spans_received = Counter(
            "spanmeter_spans_received", "Spans received over OTLP", ["transport"], registry=r
        )
        self.log_records_received = Counter(
            "spanmeter_log_records_received", "Log records received over OTLP", ["transport"], registry=r
        )
        self.records_stored = Counter("spanmeter_records_stored", "Usage records committed", ["kind"], registry=r)
        self.duplicates = Counter("spanmeter_duplicates", "Records dropped: idempotency key already stored", registry=r)
        self.conflicts = Counter(
            "spanmeter_conflicts", "Duplicates whose content differs from the stored record", registry=r
        )
        self.rejected = Counter(
            "spanmeter_rejected_spans", "Spans rejected through partial success (invalid values)", registry=r
        )
        self.unknown_model = Counter(
            "spanmeter_unknown_model_records", "LLM records stored without a cost: model not priced", registry=r
        )
        self.reported_cost_mismatch = Counter(
            "spanmeter_reported_cost_mismatch",
            "LLM records whose app-reported cost differs from the computed one beyond the tolerance",
            registry=r,
        )
        self.requests_failed = Counter(
            "spanmeter_requests_failed", "Export requests refused", ["reason"], registry=r
        )
        self.write_seconds = Histogram(
            "spanmeter_write_seconds", "Time from queueing records to their commit", registry=r
        )
        self.storage_errors = Counter(
            "spanmeter_storage_errors",
            "Export requests refused because the store failed to commit, by cause (disk_full, locked, read_only, io...)",
            ["reason"],
            registry=r,
        )
        self.storage_failing = Gauge(
            "spanmeter_storage_failing", "1 while writes to the store fail (see /readyz for why), else 0", registry=r
        )
        self.queue_depth = Gauge("spanmeter_write_queue_records", "Records waiting for the writer", registry=r)
        self.auth_failures = Counter(
            "spanmeter_auth_failures", "Requests refused for a missing, invalid or insufficient API key", ["reason"],
            registry=r,
        )
        self.exported_records = Counter(
            "spanmeter_exported_records", "Records an exporter delivered, or gave up on (dead)", ["exporter", "outcome"],
            registry=r,
        )
        self.export_failures = Counter(
            "spanmeter_export_failures", "Export attempts that failed and will be retried", ["exporter"], registry=r
        )
        self.rate_limited = Counter("spanmeter_rate_limited", "Public API calls answered 429", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
