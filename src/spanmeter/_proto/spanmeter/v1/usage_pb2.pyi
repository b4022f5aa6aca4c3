import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Product(_message.Message):
    __slots__ = ("id", "name", "type", "version", "category")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    version: str
    category: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("id", "idempotency_key", "workspace", "kind", "type", "occurred_at", "received_at", "latency_ms", "customer_id", "user_id", "email", "account_domain", "provider", "request_model", "response_model", "operation", "input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "cost_source", "price_ref", "reported_cost_usd", "status", "error_type", "event_name", "event_family", "product", "source", "campaign_id", "meter", "quantity", "conversation_id", "message_id", "task_id", "contact_id", "blueprint_id", "bot_id", "dataset_id", "skillset_id", "ability_id", "feature", "tags", "trace_id", "span_id", "service_name", "meta", "query")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MODEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MODEL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_REF_FIELD_NUMBER: _ClassVar[int]
    REPORTED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FAMILY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SKILLSET_ID_FIELD_NUMBER: _ClassVar[int]
    ABILITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    id: str
    idempotency_key: str
    workspace: str
    kind: str
    type: str
    occurred_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    latency_ms: int
    customer_id: str
    user_id: str
    email: str
    account_domain: str
    provider: str
    request_model: str
    response_model: str
    operation: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: str
    cost_source: str
    price_ref: str
    reported_cost_usd: str
    status: str
    error_type: str
    event_name: str
    event_family: str
    product: Product
    source: str
    campaign_id: str
    meter: str
    quantity: str
    conversation_id: str
    message_id: str
    task_id: str
    contact_id: str
    blueprint_id: str
    bot_id: str
    dataset_id: str
    skillset_id: str
    ability_id: str
    feature: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    trace_id: str
    span_id: str
    service_name: str
    meta: _containers.ScalarMap[str, str]
    query: str
    def __init__(self, id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., workspace: _Optional[str] = ..., kind: _Optional[str] = ..., type: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latency_ms: _Optional[int] = ..., customer_id: _Optional[str] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., account_domain: _Optional[str] = ..., provider: _Optional[str] = ..., request_model: _Optional[str] = ..., response_model: _Optional[str] = ..., operation: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., cost_usd: _Optional[str] = ..., cost_source: _Optional[str] = ..., price_ref: _Optional[str] = ..., reported_cost_usd: _Optional[str] = ..., status: _Optional[str] = ..., error_type: _Optional[str] = ..., event_name: _Optional[str] = ..., event_family: _Optional[str] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., source: _Optional[str] = ..., campaign_id: _Optional[str] = ..., meter: _Optional[str] = ..., quantity: _Optional[str] = ..., conversation_id: _Optional[str] = ..., message_id: _Optional[str] = ..., task_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., bot_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., skillset_id: _Optional[str] = ..., ability_id: _Optional[str] = ..., feature: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., service_name: _Optional[str] = ..., meta: _Optional[_Mapping[str, str]] = ..., query: _Optional[str] = ...) -> None: ...
