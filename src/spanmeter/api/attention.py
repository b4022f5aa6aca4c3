"""`GET /api/v1/usage/attention`: counts an operator should look at, kept across restarts.

Records stored without a price because their model is unknown (add a price override), and spans
refused for invalid values, since the database was created, in the caller's workspace. The
dashboard's overview shows them.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from spanmeter.api.models import _Camel
from spanmeter.api.usage import CallerDep, keyed_router
from spanmeter.store.port import AttentionCounts


class AttentionResponse(_Camel):
    unknown_model_records: int = Field(description="LLM records stored without a cost: their model has no price")
    rejected_spans: int = Field(description="spans and log records refused for invalid values")


def create_router(store: AttentionCounts) -> APIRouter:
    router = keyed_router("/api/v1/usage", "usage")

    @router.get(
        "/attention",
        response_model=AttentionResponse,
        summary="Unknown-model records and rejected spans since the database was created",
    )
    def attention(caller: CallerDep) -> AttentionResponse:
        counts = store.attention_counts(caller.workspace)
        return AttentionResponse(
            unknown_model_records=counts.get("unknown_model", 0), rejected_spans=counts.get("rejected_spans", 0)
        )

    return router
