"""OTLP log records → `event` records (the OTel Events API: a log record with an event name).

A log record counts when it carries `usage.event.name`, or an `event.name` (attribute or the
LogRecord's own `event_name` field) outside the `gen_ai.` namespace: the GenAI instrumentations
log `gen_ai.client.inference.operation.details` and similar for every model call, repeating
its tokens, and those calls are already counted from their spans.

Log records rarely have a natural unique id, so without `usage.idempotency_key` the key is a hash
of the record and its resource (less the observed time): the same event sent twice is one record.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from spanmeter.convert import attributes as A
from spanmeter.convert.events import event_record
from spanmeter.convert.spans import Converted, ConvertOptions, common_fields, resource_fields
from spanmeter.convert.values import Facts, InvalidSpan, check_time, extract, get_str, hex_id, resource_facts
from spanmeter.record import UsageRecord

IGNORED_EVENT_PREFIXES: Final = ("gen_ai.",)


def convert_logs(request: ExportLogsServiceRequest, options: ConvertOptions, received_at: int) -> Converted:
    out = Converted()
    for resource_logs in request.resource_logs:
        resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
        resource = resource_facts(resource_logs.resource, resource_bytes)
        shared = resource_fields(resource, options)  # once per resource, not per log record
        for scope_logs in resource_logs.scope_logs:
            for index, log in enumerate(scope_logs.log_records):
                try:
                    record = convert_log(log, resource, resource_bytes, options, shared)
                except InvalidSpan as error:
                    out.reject(f"log record {index} of scope {scope_logs.scope.name!r}", error)
                    continue
                if record is not None:
                    record.received_at = received_at
                    out.records.append(record)
    return out


def event_name(log: LogRecord, facts: Facts) -> Any:
    """The usage event this log record names, or None when it is no usage event."""
    if "event_name" in facts:
        return facts["event_name"][2]
    held = facts.get("log_event_name")
    name = log.event_name or (held[2] if held else None)
    if not name or not isinstance(name, str) or name.startswith(IGNORED_EVENT_PREFIXES):
        return None
    return name


def convert_log(
    log: LogRecord,
    resource: Facts,
    resource_bytes: bytes,
    options: ConvertOptions,
    shared: dict[str, Any] | InvalidSpan | None = None,
) -> UsageRecord | None:
    facts = extract(log.attributes)
    name = event_name(log, facts)
    if name is None:
        return None
    limit = options.max_field_chars
    occurred = log.time_unix_nano or log.observed_time_unix_nano
    if occurred <= 0:
        raise InvalidSpan("time_unix_nano or observed_time_unix_nano is required")
    check_time("time_unix_nano" if log.time_unix_nano else "observed_time_unix_nano", occurred)
    facts["event_name"] = (-1, A.EVENT_NAME, name)
    layers = (facts, resource)
    common = common_fields(
        layers,
        options,
        trace_id=hex_id(log.trace_id, 16, "trace_id") if log.trace_id else None,
        span_id=hex_id(log.span_id, 8, "span_id") if log.span_id else None,
        shared=shared,
    )
    key = get_str(layers[:1], "idempotency_key", limit) or _log_key(log, resource_bytes)
    return event_record(layers, common, key, occurred, limit, max_meta_keys=options.max_meta_keys)


def _log_key(log: LogRecord, resource_bytes: bytes) -> str:
    """A hash of what the event is: resource and record, without the time the SDK observed it
    (when the event has its own time), so a re-export through another pipeline keeps the key."""
    if log.time_unix_nano and log.observed_time_unix_nano:
        log = LogRecord.FromString(log.SerializeToString())
        log.observed_time_unix_nano = 0
    digest = hashlib.sha256(resource_bytes + b"\x00" + log.SerializeToString(deterministic=True))
    return f"log:{digest.hexdigest()[:32]}"
