"""Response models of the query API (they are the OpenAPI document's schemas).

JSON names are camelCase throughout (`conversationId`, `createdAt`); each field is the proto field of the same name in snake_case. Absent values are
left out of a record item rather than sent as null. Times are RFC 3339 UTC strings, series
timestamps Unix milliseconds, money decimal strings (exact).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ProductOut(_Camel):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    version: str | None = None
    category: str | None = None


class UsageItem(_Camel):
    id: str = Field(description="record id (UUIDv7, time-ordered)")
    idempotency_key: str
    workspace: str
    kind: Literal["llm", "event", "meter"]
    type: str = Field(description="usage type: chat, embeddings, an event name, a meter name, ...")
    count: int | float = Field(description="total tokens (llm), quantity (meter) or 1 (event)")
    occurred_at: str = Field(description="when the usage happened (span start), RFC 3339 UTC")
    created_at: str = Field(description="when spanmeter stored the record, RFC 3339 UTC")
    updated_at: str = Field(description="equals createdAt: records are immutable")
    latency_ms: int | None = None
    customer_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    account_domain: str | None = None
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    operation: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: str | None = Field(None, description="decimal string, exact")
    cost_source: str | None = None
    price_ref: str | None = None
    reported_cost_usd: str | None = Field(None, description="decimal string, exact")
    status: str | None = None
    error_type: str | None = None
    event_name: str | None = None
    event_family: str | None = None
    product: ProductOut | None = None
    source: str | None = None
    campaign_id: str | None = None
    meter: str | None = None
    quantity: str | None = Field(None, description="decimal string, exact")
    conversation_id: str | None = None
    message_id: str | None = None
    task_id: str | None = None
    contact_id: str | None = None
    blueprint_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    ability_id: str | None = None
    feature: str | None = None
    tags: list[str] | None = None
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None
    meta: dict[str, str] = Field(default_factory=dict)
    query: str | None = Field(None, description="the prompt; only when content capture is on")


class RecordsPage(BaseModel):
    items: list[UsageItem]
    cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class Point(BaseModel):
    timestamp: int = Field(description="Unix milliseconds at midnight UTC")
    total: int


class CostPoint(BaseModel):
    timestamp: int = Field(description="Unix milliseconds at midnight UTC")
    total: str = Field(description="USD, decimal string")


class Series(BaseModel):
    tokens: list[Point] = Field(description="tokens of all LLM calls that day")
    conversations: list[Point] = Field(description="conversations first seen that day")
    messages: list[Point] = Field(description="LLM calls that day")
    cost: list[CostPoint]


class Snapshot(_Camel):
    period_start: str = Field(description="start of the billing period (calendar month, UTC), RFC 3339")
    period_end: str = Field(description="end of the billing period (exclusive), RFC 3339")
    customer: str | None = None
    tokens: int
    input_tokens: int
    output_tokens: int
    messages: int = Field(description="LLM calls")
    conversations: int = Field(description="distinct conversations with usage in the period")
    events: int
    meter_records: int
    meters: dict[str, str] = Field(
        description="each meter's total quantity in the period, an exact decimal string: {\"pages\": \"12.5\"}"
    )
    cost: str = Field(description="USD, decimal string")


class AdoptionProduct(BaseModel):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    category: str | None = None


class AdoptionRow(_Camel):
    rank: int
    product: AdoptionProduct
    active_developers: int = Field(
        description="distinct developers (user id, else email) with an event in the period"
    )
    accounts: int = Field(description="distinct account domains")
    events: int
    activated_developers: int = Field(
        description="developers with an activation, retention, expansion or commercial event"
    )
    events_by_family: dict[str, int]
    adoption_score: float = Field(description="0-100; see the methodology")


class AdoptionResponse(_Camel):
    period: str
    category: str | None = None
    generated_at: str
    min_developers: int = Field(description="k: rows with fewer distinct developers are suppressed")
    suppressed: int = Field(description="rows left out because their cohort is below k")
    methodology: str = Field(description="URL of the methodology and ranking policy")
    rows: list[AdoptionRow]


class Methodology(_Camel):
    version: str
    min_developers: int
    weights: dict[str, float]
    text: str = Field(description="the methodology and ranking policy, Markdown")


class AggregateRowOut(_Camel):
    window_start: str | None = Field(description="start of the window, RFC 3339 UTC; null when window=none")
    window_end: str | None = Field(description="end of the window (exclusive); null when window=none")
    group: dict[str, str | None] = Field(
        description="the group's value of each group_by dimension; null for records without one"
    )
    values: dict[str, int | str] = Field(
        description="each metric: cost and quantity as exact decimal strings (USD for cost), others integers"
    )


class AggregateResponse(_Camel):
    metrics: list[str]
    group_by: list[str]
    window: Literal["hour", "day", "month", "none"]
    tz: str = Field(description="the time zone of the windows")
    from_: str | None = Field(alias="from", description="the query's from, RFC 3339 UTC")
    to: str | None
    source: Literal["rollup", "records"] = Field(
        description="rollup: answered from the daily rollups; records: from the records themselves"
    )
    rows: list[AggregateRowOut] = Field(
        description="one per window and group with at least one record, by window then group"
    )
