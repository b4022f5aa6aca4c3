"""The `fluxrate` exporter: usage events to Fluxrate metering, one POST per record.

Fluxrate's SDK endpoint, `POST <endpoint>/api/v1/sdk/track` with the organisation's key in
`X-API-Key`, takes one usage event as JSON:

    {"meter_token": "<meter UUID>", "customer_external_id": "acme", "quantity": 1520,
     "timestamp": "2026-11-23T12:00:00.000000Z", "idempotency_key": "<the record's key>"}

and `metadata` ({string: string}, only when the config's `metadata` names record fields).
Nothing else is sent. `quantity` must be > 0; a repeat with the same `idempotency_key` is
de-duplicated by Fluxrate (no double charge), so a retried or re-sent record is safe.

What a record becomes (`RecordMapping`): its meter token is `meter_tokens[<meter name>]` for a meter
record, `meter_tokens[<type>]` for the others (e.g. `chat`, `embeddings`, an event name); its
quantity is the record's `quantity` (meter records), the configured `token_field` (LLM records,
`total_tokens` by default) or 1 (an event record: one occurrence). Records with no meter token or
no quantity above 0 are skipped, never sent: each skip is counted per reason
(`spanmeter_exporter_skipped_records_total{exporter,reason}` on /metrics, and in the database:
`spanmeter exporters status`, with what to configure); the log says what to configure at the
first one of each reason, and the count at 10, 100, 1000, ... A record with a
meter token and a quantity but no customer (and no `default_customer`) is a dead delivery: billable
usage Fluxrate cannot attribute is listed (`spanmeter deliveries list`), not dropped.

Answers (`POLICY`): 200/201/202 delivered; 400 and 422 dead (the event is refused); 401 and 403
(the key is refused) and 404 (a wrong endpoint) pause the exporter; 402 waits `retry_on_failure::long_interval`; 429, 5xx
and network errors are retried with back-off, honouring `Retry-After`.

With `aggregation::enabled`, records are summed per (customer, meter, window) and each window's
total is sent once, after its grace period: exporters/fluxrate_windows.py.

Fluxrate has no dry-run endpoint: `spanmeter exporters check` is not offered (a test event would
be billed).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from spanmeter.exporters.base import Exporter
from spanmeter.exporters.per_record import Answer, PerRecordExporter, Unsendable
from spanmeter.exporters.policy import StatusPolicy, rest_policy
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import HttpExporterConfig, SettingsModel
from spanmeter.record import UsageRecord, decimal_string, format_ns

log = logging.getLogger(__name__)

TRACK_PATH: Final = "/api/v1/sdk/track"
TokenField = Literal[
    "total_tokens", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"
]
# Record fields that can be sent as metadata: the string-valued ones, but never the prompt.
METADATA_FIELDS: Final = tuple(
    f.name for f in fields(UsageRecord) if f.type in ("str", "str | None") and f.name != "query"
)

_BASE: Final = rest_policy("Fluxrate", f"the base URL of the Fluxrate API; {TRACK_PATH} is appended")
POLICY: Final = StatusPolicy(
    _BASE.table, {**_BASE.hints, 400: "Fluxrate refuses the event; its answer names the field"}
)


class AggregationConfig(SettingsModel):
    enabled: bool = Field(
        False, description="sum records per (customer, meter, window) and send each window's total once"
    )
    window: float = Field(
        60.0, gt=0, description="seconds per window, aligned to the Unix epoch (UTC), by the records' own time"
    )
    grace: float = Field(
        30.0,
        ge=0,
        description="seconds after a window's end before its total is sent; a record read after that is sent"
        " on its own, with its own idempotency key",
    )
    state_path: str | None = Field(
        None,
        description="SQLite file holding the windows not sent yet (durable across restarts); required with"
        " aggregation: an absolute path next to the database, e.g. /var/lib/spanmeter/fluxrate-windows.db",
    )

    @model_validator(mode="after")
    def _state_path(self) -> AggregationConfig:
        if self.enabled and not self.state_path:
            raise ValueError(
                "state_path: required with aggregation: a file that keeps the windows' sums across restarts, next"
                " to the database (e.g. /var/lib/spanmeter/fluxrate-windows.db)"
            )
        return self


class FluxrateConfig(HttpExporterConfig):
    endpoint: str = Field(
        description=f"base URL of the Fluxrate API; each event is POSTed to <endpoint>{TRACK_PATH}"
    )
    api_key: str | None = Field(
        None, description="the organisation's API key (org_live_...), sent as X-API-Key; required to send"
    )
    meter_tokens: dict[str, str] = Field(
        {},
        description="meter name (meter records) or record type (chat, embeddings, an event name) -> Fluxrate"
        " meter_token (UUID); records of other types are skipped",
    )
    default_customer: str | None = Field(
        None,
        description="customer_external_id of records without a customer id; null: such records are dead"
        " deliveries",
    )
    token_field: TokenField = Field("total_tokens", description="which token count is an LLM record's quantity")
    metadata: list[str] = Field(
        [],
        description="record fields (user_id, conversation_id, feature, ...) or meta.<key> sent as `metadata`"
        " (e.g. for UNIQUE_COUNT meters); not with aggregation",
    )
    aggregation: AggregationConfig = Field(AggregationConfig(), description="optional pre-aggregation per window")

    @field_validator("meter_tokens")
    @classmethod
    def _tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for name, token in value.items():
            try:
                uuid.UUID(token)
            except ValueError:
                raise ValueError(
                    f"{name}: {token!r} is not a meter token: Fluxrate meter tokens are UUIDs (the meter's page)"
                ) from None
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: list[str]) -> list[str]:
        for name in value:
            if not (name.startswith("meta.") and len(name) > 5) and name not in METADATA_FIELDS:
                raise ValueError(f"{name!r}: expected meta.<key> or one of {', '.join(METADATA_FIELDS)}")
        return value

    @model_validator(mode="after")
    def _sums_carry_no_metadata(self) -> FluxrateConfig:
        if self.aggregation.enabled and self.metadata:
            raise ValueError(
                "metadata cannot be sent with aggregation: a window's total sums records with different values;"
                " turn one of them off"
            )
        return self


@dataclass(slots=True, frozen=True)
class Usage:
    """One usage event for Fluxrate: what a record (or a window's total) is sent as."""

    meter_token: str
    customer: str
    quantity: Decimal  # > 0
    occurred_at: int  # ns
    idempotency_key: str
    metadata: dict[str, str] | None = None
    workspace: str = "default"

    def body(self) -> dict[str, Any]:
        """The contract's fields only; `quantity` stays a Decimal (written exactly by `json_bytes`)."""
        body: dict[str, Any] = {
            "meter_token": self.meter_token,
            "customer_external_id": self.customer,
            "quantity": self.quantity,
            "timestamp": format_ns(self.occurred_at),
            "idempotency_key": self.idempotency_key,
        }
        if self.metadata:
            body["metadata"] = self.metadata
        return body


def json_bytes(body: dict[str, Any]) -> bytes:
    """The body as JSON, with Decimal values written as exact JSON numbers (never via a float)."""
    numbers = {k: v for k, v in body.items() if isinstance(v, Decimal)}
    text = json.dumps({k: v for k, v in body.items() if k not in numbers}, separators=(",", ":"), ensure_ascii=False)
    extra = "".join(f",{json.dumps(k)}:{decimal_string(v)}" for k, v in numbers.items())
    return (text[:-1] + extra + "}" if text != "{}" else "{" + extra[1:] + "}").encode()


class Skips:
    """Records not sent, counted per reason. The first of each reason is logged with the fix, then
    the running count at 10, 100, 1000, ... (no log line per record). `count`, set by the runner
    (`SkipsRecords`), counts each skip by its kind (`no_meter_token`, `no_quantity`), with the
    reason and the fix (/metrics, and the store: `spanmeter exporters status`)."""

    def __init__(self, exporter: str) -> None:
        self.exporter = exporter
        self.counts: Counter[str] = Counter()
        self.count: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()

    def add(self, kind: str, reason: str, fix: str) -> None:
        if self.count is not None:
            self.count(kind, f"{reason}: {fix}")
        with self._lock:
            self.counts[reason] += 1
            count = self.counts[reason]
        if count == 1:
            log.warning("exporter %s: a record skipped, not sent: %s (%s)", self.exporter, reason, fix)
        elif str(count).rstrip("0") == "1":
            log.warning("exporter %s: %d records skipped so far: %s (%s)", self.exporter, count, reason, fix)


class RecordMapping:
    """What a record is sent as (or None: skipped, and counted in `skips`)."""

    def __init__(self, exporter: str, config: FluxrateConfig) -> None:
        self.meter_tokens = dict(config.meter_tokens)
        self.token_field = config.token_field
        self.default_customer = config.default_customer
        self.metadata = tuple(config.metadata)
        self.skips = Skips(exporter)

    def quantity(self, record: UsageRecord) -> Decimal | None:
        if record.kind == "meter":
            return record.quantity
        if record.kind == "llm":
            tokens = getattr(record, self.token_field)
            return None if tokens is None else Decimal(tokens)
        return Decimal(1)  # an event: one occurrence

    def usage(self, record: UsageRecord) -> Usage | None:
        """The record's event; None: skipped (no meter token, no quantity above 0). Raises
        Unsendable for a billable record without a customer (and no default_customer)."""
        name = record.meter if record.kind == "meter" and record.meter else record.type
        token = self.meter_tokens.get(name)
        if token is None:
            self.skips.add(
                "no_meter_token", f"no meter token for {name!r}", f"add {name}: <meter token> to meter_tokens to send them"
            )
            return None
        quantity = self.quantity(record)
        if quantity is None or quantity <= 0:
            self.skips.add("no_quantity", f"{name!r} with quantity 0 or none", "Fluxrate only takes quantities above 0")
            return None
        customer = record.customer_id or self.default_customer
        if not customer:
            raise Unsendable(
                f"record {record.id or record.idempotency_key} has no customer id, which Fluxrate requires"
                " (customer_external_id): set usage.customer.id on the spans, or the exporter's"
                " default_customer, then `spanmeter deliveries retry`"
            )
        return Usage(token, customer, quantity, record.occurred_at, record.idempotency_key,
                     self._metadata(record), record.workspace)

    def _metadata(self, record: UsageRecord) -> dict[str, str] | None:
        found: dict[str, str] = {}
        for name in self.metadata:
            value = record.meta.get(name[5:]) if name.startswith("meta.") else getattr(record, name)
            if value is not None:
                found[name] = str(value)
        return found or None


class FluxrateExporter(PerRecordExporter):
    """One record per request; a record with no meter token, customer or quantity is skipped."""

    path = TRACK_PATH
    policy = POLICY

    def __init__(self, name: str, config: FluxrateConfig) -> None:
        if not config.api_key:
            raise ValueError(f"exporter {name}: api_key is not set: give the organisation's Fluxrate API key")
        super().__init__(name, config.endpoint, headers={"x-api-key": config.api_key}, timeout=config.timeout)
        self.mapping = RecordMapping(name, config)

    def count_skips(self, count: Callable[[str, str], None]) -> None:
        self.mapping.skips.count = count

    def body(self, record: UsageRecord) -> dict[str, Any] | None:
        usage = self.mapping.usage(record)
        return None if usage is None else usage.body()

    def post(self, body: dict[str, Any]) -> Answer:
        try:
            response = self._client.post(self.url, content=json_bytes(body), headers=self._headers)
        except httpx.HTTPError as error:
            return self.policy.unreachable(error, self.url)
        return self.classify(response)


def create(name: str, config: FluxrateConfig) -> Exporter:
    sender = FluxrateExporter(name, config)
    if not config.aggregation.enabled:
        return sender
    from spanmeter.exporters.fluxrate_windows import WindowedFluxrateExporter, WindowState

    aggregation = config.aggregation
    return WindowedFluxrateExporter(
        sender,
        WindowState(Path(aggregation.state_path or ""), name),
        window=aggregation.window,
        grace=aggregation.grace,
        tick=config.flush_interval,
        retry=config.retry_on_failure,
    )


TYPE: Final = register("fluxrate", FluxrateConfig, create)
