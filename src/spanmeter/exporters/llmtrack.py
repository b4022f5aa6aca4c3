"""The `llmtrack` exporter: each LLM call record as one LLMtrack ingest event.

LLMtrack (workspace dashboards of LLM calls) takes one event per request, `POST /api/ingest`,
with the ingestion key as `Authorization: Bearer <key>` (or `x-api-key: <key>`). The body has
exactly LLMtrack's fields:

    {"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 1200, "completion_tokens": 300,
     "total_tokens": 1500, "latency_ms": 840, "status": "success", "cost": 0.00036,
     "metadata": {"feature": "support-reply"}}

`model` is the requested model (else the response's); token counts and latency are null when
the record has none; `cost` (the record's cost in USD, left out when unknown) is informational:
LLMtrack prices the event itself from the token counts. `metadata.feature` comes from the record
field or `meta.<key>` named by `feature_from` (left out when the record has none: LLMtrack then
files it under `unknown`). Only `llm` records are sent; one without a provider or a model becomes
a dead delivery (LLMtrack refuses such an event).

Answers (`POLICY`): 201 delivered; 400 (`Invalid payload`) and 422 dead; 401 (missing, invalid,
revoked or inactive key) and 403 pause the exporter with an error in the log until the key is
fixed (tried again every `max_interval`); 404 pauses too (wrong endpoint); 402 (plan quota used
up) waits `long_interval` (hours) without ever making records dead; 429, 5xx and network errors
are retried with exponential back-off, honouring `Retry-After`.

LLMtrack takes no idempotency key: each record goes in a request of its own and is committed as
delivered before the next is sent (exporters/per_record.py), so a retry or a restart never sends
it again. A crash between LLMtrack's 201 and that commit (one small SQLite commit) sends that one
record again at the next start. There is no `spanmeter exporters check`: LLMtrack has no dry-run
endpoint, and every accepted event counts toward the workspace's plan.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from spanmeter.exporters.per_record import PerRecordExporter, Unsendable
from spanmeter.exporters.policy import rest_policy
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import ExportFilterConfig, HttpExporterConfig
from spanmeter.record import UsageRecord

PATH: Final = "/api/ingest"
META: Final = "meta."
# Record fields metadata.feature may come from: the text ones, never the prompt (`query`).
FEATURE_FIELDS: Final = tuple(
    f.name for f in fields(UsageRecord) if f.type in ("str", "str | None") and f.name != "query"
)
POLICY: Final = rest_policy("LLMtrack", "the base URL; /api/ingest is appended")


class LLMtrackConfig(HttpExporterConfig):
    endpoint: str = Field(
        description="base URL of the LLMtrack API, e.g. https://llmtrack.example.com; /api/ingest is appended"
    )
    api_key: str = Field(min_length=1, description="LLMtrack ingestion key of the workspace (never a provider key)")
    auth_header: Literal["authorization", "x-api-key"] = Field(
        "authorization", description="send the key as `Authorization: Bearer <key>` or as `x-api-key: <key>`"
    )
    feature_from: str = Field(
        "feature",
        description="what becomes metadata.feature: a record field (feature, type, service_name, operation, ...)"
        " or meta.<key>; left out when the record has no value",
    )
    filter: ExportFilterConfig = Field(
        ExportFilterConfig(kinds=["llm"]), description="which records it sends (LLM calls: other kinds are skipped)"
    )

    @field_validator("feature_from")
    @classmethod
    def _feature_from(cls, value: str) -> str:
        if (value.startswith(META) and len(value) > len(META)) or value in FEATURE_FIELDS:
            return value
        raise ValueError(f"expected meta.<key> or one of the record's fields {', '.join(FEATURE_FIELDS)}; got {value!r}")


class LLMtrackExporter(PerRecordExporter):
    path = PATH
    policy = POLICY

    def __init__(self, name: str, config: LLMtrackConfig) -> None:
        auth = {"authorization": f"Bearer {config.api_key}"} if config.auth_header == "authorization" else {
            "x-api-key": config.api_key
        }
        super().__init__(name, config.endpoint, headers=auth, timeout=config.timeout)
        self.feature_from = config.feature_from

    def feature(self, record: UsageRecord) -> str | None:
        if self.feature_from.startswith(META):
            value: str | None = record.meta.get(self.feature_from[len(META):])
        else:
            value = getattr(record, self.feature_from)
        return value or None

    def body(self, record: UsageRecord) -> dict[str, Any] | None:
        if record.kind != "llm":
            return None
        model = record.request_model or record.response_model
        if not record.provider or not model:
            missing = "provider" if not record.provider else "model"
            raise Unsendable(f"the record has no {missing}, which LLMtrack requires (record {record.id})")
        body: dict[str, Any] = {
            "provider": record.provider,
            "model": model,
            "prompt_tokens": record.input_tokens,
            "completion_tokens": record.output_tokens,
            "total_tokens": record.total_tokens,
            "latency_ms": record.latency_ms,
            "status": record.status,
        }
        if record.cost_usd is not None:
            # A JSON number. Exact: a cost of nano-USD below $1M has at most 15 significant digits,
            # which a float's shortest repr gives back unchanged.
            body["cost"] = float(record.cost_usd)
        feature = self.feature(record)
        if feature is not None:
            body["metadata"] = {"feature": feature}
        return body


def create(name: str, config: LLMtrackConfig) -> LLMtrackExporter:
    return LLMtrackExporter(name, config)


TYPE: Final = register("llmtrack", LLMtrackConfig, create)
