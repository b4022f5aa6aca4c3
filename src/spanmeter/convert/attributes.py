"""Where each fact of a usage record is read from: one table of attribute names per fact.

Current GenAI semantic-convention names come first (the constants of
opentelemetry-semantic-conventions where they exist), then deprecated and vendor names
(OpenLLMetry `llm.*` / `gen_ai.usage.prompt_tokens`, OpenInference `llm.token_count.*`).
The first name present on a span wins. README.md ("Attribute names") lists the main facts and names.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as GA
from opentelemetry.semconv._incubating.attributes import session_attributes as SESSION
from opentelemetry.semconv._incubating.attributes import user_attributes as USER
from opentelemetry.semconv.attributes import error_attributes as ERROR
from opentelemetry.semconv.attributes import service_attributes as SERVICE

from spanmeter import usage_schema as U

# --- LLM call -----------------------------------------------------------------------------
OPERATION: Final = (GA.GEN_AI_OPERATION_NAME, "llm.request.type")
PROVIDER: Final = (GA.GEN_AI_PROVIDER_NAME, GA.GEN_AI_SYSTEM, "llm.provider", "llm.system")
REQUEST_MODEL: Final = (
    GA.GEN_AI_REQUEST_MODEL,
    "llm.request.model",
    "llm.request.model_name",
)
# OpenInference puts the request parameters (with "model") in a JSON string; its OpenAI spans have
# the request model only there.
INVOCATION_PARAMETERS: Final = ("llm.invocation_parameters", "embedding.invocation_parameters")
# OpenInference's `llm.model_name` and `embedding.model_name` are the model the provider answered
# with (e.g. a dated snapshot; openinference-instrumentation-openai reads both from the response).
RESPONSE_MODEL: Final = (
    GA.GEN_AI_RESPONSE_MODEL,
    "llm.response.model",
    "llm.response.model_name",
    "llm.model_name",
    "embedding.model_name",
    "langfuse.observation.model.name",  # the request model on a failed call (model_call.py)
)
RESPONSE_ID: Final = (GA.GEN_AI_RESPONSE_ID,)
# The provider's request id (one per HTTP request); the anthropic SDK's tracing sets it from the
# `request-id` header. Keys a call with no response id (a failed one), see convert/call_ids.py.
# `aws.request_id` (the `x-amzn-RequestId` header, botocore's instrumentation) is the only id a
# Bedrock call has: it keys its record.
REQUEST_ID: Final = ("anthropic.request.id", "aws.request_id")
# OpenInference's default mode keeps the response id only inside the raw response body it records
# as its output. Read only for a model call without a response id (not a fact: never decoded else).
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"

INPUT_TOKENS: Final = (
    GA.GEN_AI_USAGE_INPUT_TOKENS,
    GA.GEN_AI_USAGE_PROMPT_TOKENS,
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKENS: Final = (
    GA.GEN_AI_USAGE_OUTPUT_TOKENS,
    GA.GEN_AI_USAGE_COMPLETION_TOKENS,
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
TOTAL_TOKENS: Final = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
CACHE_READ_TOKENS: Final = (
    GA.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_TOKENS: Final = (
    GA.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_TOKENS: Final = (
    GA.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
REPORTED_COST: Final = ("gen_ai.usage.cost", "llm.cost.total", "operation.cost")  # the last: Logfire
ERROR_TYPE: Final = (ERROR.ERROR_TYPE,)

# Instrumentation scopes known to pass the provider's exclusive input count through (input without
# the cache reads and writes): opentelemetry-instrumentation-botocore copies Bedrock's `inputTokens`
# (Converse) / Anthropic's `input_tokens` (InvokeModel) as gen_ai.usage.input_tokens.
DEFAULT_EXCLUSIVE_INPUT_SCOPES: Final = ("opentelemetry.instrumentation.botocore.bedrock-runtime",)

# Markers of "this span is one model call" from other conventions.
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_MODEL_KINDS: Final = frozenset({"LLM", "EMBEDDING"})
# The Langfuse SDK's model calls (convert/langfuse.py): the observation type and JSON usage / cost.
LANGFUSE_OBSERVATION_TYPE: Final = "langfuse.observation.type"
LANGFUSE_USAGE_DETAILS: Final = "langfuse.observation.usage_details"
LANGFUSE_COST_DETAILS: Final = "langfuse.observation.cost_details"
# OpenLLMetry marks its framework spans (workflow, task, agent, tool); they repeat their children's totals.
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"

# gen_ai.operation.name / llm.request.type values that are one model call (counted by default).
MODEL_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "completion", "generate_content", "embeddings", "embedding", "rerank"}
)
# Normalised record `type` for the operation spellings emitters use.
OPERATION_TYPES: Final = {"completion": "text_completion", "embedding": "embeddings"}

# --- who, relations, product events (the `usage.*` names: spanmeter/usage_schema.py) ------------
CUSTOMER_ID: Final = (U.CUSTOMER_ID,)
USER_ID: Final = (USER.USER_ID, "enduser.id", U.USER_ID, "gen_ai.user")  # gen_ai.user: OpenLLMetry
EMAIL: Final = (USER.USER_EMAIL, U.USER_EMAIL)
ACCOUNT_DOMAIN: Final = (U.ACCOUNT_DOMAIN,)
CONVERSATION_ID: Final = (GA.GEN_AI_CONVERSATION_ID, SESSION.SESSION_ID, U.CONVERSATION_ID)
MESSAGE_ID: Final = (U.MESSAGE_ID, GA.GEN_AI_RESPONSE_ID)
SERVICE_NAME: Final = SERVICE.SERVICE_NAME

IDEMPOTENCY_KEY: Final = U.IDEMPOTENCY_KEY
EVENT_NAME: Final = U.EVENT_NAME
EVENT_FAMILY: Final = U.EVENT_FAMILY
SOURCE: Final = U.SOURCE
CAMPAIGN_ID: Final = U.CAMPAIGN_ID
METER: Final = U.METER
QUANTITY: Final = U.QUANTITY
FEATURE: Final = U.FEATURE
TAGS: Final = U.TAGS
META_PREFIX: Final = U.META_PREFIX
PRODUCT_FIELDS: Final = U.PRODUCT_FIELDS
# Relation ids other than conversation/message, read from usage.<relation>.id.
RELATIONS: Final = {
    "task_id": "usage.task.id",
    "contact_id": "usage.contact.id",
    "blueprint_id": "usage.blueprint.id",
    "bot_id": "usage.bot.id",
    "dataset_id": "usage.dataset.id",
    "skillset_id": "usage.skillset.id",
    "ability_id": "usage.ability.id",
}
# Log records of the OTel Events API carry their name here.
LOG_EVENT_NAME: Final = ("usage.event.name", "event.name")

# --- the index the converter reads spans with ----------------------------------------------
# Each fact of a record and the attribute names it is read from, first name first. Converting a
# span is one pass over its attributes with FACT_INDEX: attributes that are no fact (prompts,
# HTTP details) are never decoded.
FACTS: Final[dict[str, tuple[str, ...]]] = {
    "operation": OPERATION,
    "provider": PROVIDER,
    "request_model": REQUEST_MODEL,
    "invocation_parameters": INVOCATION_PARAMETERS,
    "response_model": RESPONSE_MODEL,
    "response_id": RESPONSE_ID,
    "request_id": REQUEST_ID,
    "input_tokens": INPUT_TOKENS,
    "output_tokens": OUTPUT_TOKENS,
    "total_tokens": TOTAL_TOKENS,
    "cache_read_tokens": CACHE_READ_TOKENS,
    "cache_write_tokens": CACHE_WRITE_TOKENS,
    "reasoning_tokens": REASONING_TOKENS,
    "reported_cost": REPORTED_COST,
    "error_type": ERROR_TYPE,
    "openinference_kind": (OPENINFERENCE_SPAN_KIND,),
    "traceloop_kind": (TRACELOOP_SPAN_KIND,),
    "langfuse_type": (LANGFUSE_OBSERVATION_TYPE,),
    "langfuse_usage": (LANGFUSE_USAGE_DETAILS,),
    "langfuse_cost": (LANGFUSE_COST_DETAILS,),
    "customer_id": CUSTOMER_ID,
    "user_id": USER_ID,
    "email": EMAIL,
    "account_domain": ACCOUNT_DOMAIN,
    "conversation_id": CONVERSATION_ID,
    "message_id": MESSAGE_ID,
    "service_name": (SERVICE_NAME,),
    "idempotency_key": (IDEMPOTENCY_KEY,),
    "event_name": (EVENT_NAME,),
    "log_event_name": ("event.name",),
    "event_family": (EVENT_FAMILY,),
    "source": (SOURCE,),
    "campaign_id": (CAMPAIGN_ID,),
    "meter": (METER,),
    "quantity": (QUANTITY,),
    "feature": (FEATURE,),
    "tags": (TAGS,),
    **{f"product_{name}": (attr,) for name, attr in PRODUCT_FIELDS.items()},
    **{name: (attr,) for name, attr in RELATIONS.items()},
}


def _index(facts: dict[str, tuple[str, ...]]) -> dict[str, tuple[tuple[str, int], ...]]:
    index: dict[str, list[tuple[str, int]]] = {}
    for fact, names in facts.items():
        for rank, name in enumerate(names):
            index.setdefault(name, []).append((fact, rank))
    return {name: tuple(entries) for name, entries in index.items()}


FACT_INDEX: Final = _index(FACTS)
