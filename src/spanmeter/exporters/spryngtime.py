"""The `spryngtime` exporter: each LLM call record as one Spryngtime trackUsage message.

Spryngtime bills per customer and per message: one trackUsage request is one message, so each
`llm` record goes in a request of its own (other kinds are not messages and are skipped). The
request is a JSON POST to the configured full URL (Spryngtime documents its SDK, not a URL),
with the key as `Authorization: Bearer <key>`, and has only trackUsage's fields:

    {"key": "acme", "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
     "conversationId": "conv-42", "tags": ["support"], "query": "..."}

`key` is the record's customer id (`default_key` for records without one; with no default such a
record becomes a dead delivery). `usage` holds the counts the record has (an embeddings call has
no completion tokens). `conversationId` and `tags` are left out when the record has none.
`query`, the prompt text, is sent only when `send_query` is on and the record holds one (records
hold it only when content capture is on: processors::usage::content_capture); never by default.
`openAiResponse` is never sent: spanmeter keeps counts, not raw responses.

Answers (`POLICY`): 2xx delivered; 400 and 422 dead; 401 and 403 pause the exporter with an error
in the log until the key is fixed (tried again every `max_interval`); 404 pauses too (wrong URL);
402 waits `long_interval` (hours) without ever making records dead; 429, 5xx and network errors
are retried with exponential back-off, honouring `Retry-After`.

trackUsage takes no idempotency key: each record is committed as delivered before the next is
sent (exporters/per_record.py), so a retry or a restart never sends it again. A crash between
Spryngtime's answer and that commit (one small SQLite commit) sends that one record again at the
next start. There is no `spanmeter exporters check`: trackUsage has no dry run, and every
accepted request is billed as a message.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field

from spanmeter.exporters.per_record import PerRecordExporter, Unsendable
from spanmeter.exporters.policy import rest_policy
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import ExportFilterConfig, HttpExporterConfig
from spanmeter.record import UsageRecord

POLICY: Final = rest_policy("Spryngtime", "the full trackUsage URL")


class SpryngtimeConfig(HttpExporterConfig):
    endpoint: str = Field(
        description="full URL of the trackUsage endpoint, e.g. https://spryngtime.example.com/api/usage-tracking/track-usage"
    )
    api_key: str = Field(min_length=1, description="Spryngtime API key, sent as `Authorization: Bearer <key>`")
    default_key: str | None = Field(
        None,
        min_length=1,
        description="`key` of records without a customer id; null: such records become dead deliveries",
    )
    send_query: bool = Field(
        False,
        description="send the prompt text (`query`) of records that hold one; records hold it only when"
        " processors::usage::content_capture is on",
    )
    filter: ExportFilterConfig = Field(
        ExportFilterConfig(kinds=["llm"]), description="which records it sends (LLM calls: other kinds are skipped)"
    )


class SpryngtimeExporter(PerRecordExporter):
    policy = POLICY  # no `path`: the endpoint is the full URL

    def __init__(self, name: str, config: SpryngtimeConfig) -> None:
        super().__init__(
            name, config.endpoint, headers={"authorization": f"Bearer {config.api_key}"}, timeout=config.timeout
        )
        self.default_key = config.default_key
        self.send_query = config.send_query

    def body(self, record: UsageRecord) -> dict[str, Any] | None:
        if record.kind != "llm":
            return None
        key = record.customer_id or self.default_key
        if key is None:
            raise Unsendable(
                f"the record has no customer id for Spryngtime's `key` (record {record.id}); set the exporter's"
                " default_key, then `spanmeter deliveries retry`"
            )
        counts = (
            ("prompt_tokens", record.input_tokens),
            ("completion_tokens", record.output_tokens),
            ("total_tokens", record.total_tokens),
        )
        body: dict[str, Any] = {"key": key, "usage": {name: value for name, value in counts if value is not None}}
        if record.conversation_id:
            body["conversationId"] = record.conversation_id
        if record.tags:
            body["tags"] = list(record.tags)
        if self.send_query and record.query:
            body["query"] = record.query
        return body


def create(name: str, config: SpryngtimeConfig) -> SpryngtimeExporter:
    return SpryngtimeExporter(name, config)


TYPE: Final = register("spryngtime", SpryngtimeConfig, create)
