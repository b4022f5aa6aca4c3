"""`GET /api/v1/exporters`: where each exporter stands (what `spanmeter exporters status` prints),
for the dashboard. Exporters send every workspace's records, so this needs an admin key."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from pydantic import BaseModel, Field

from spanmeter.api.errors import ApiError
from spanmeter.api.usage import CallerDep, keyed_router
from spanmeter.record import format_ns
from spanmeter.store.outbox import ExporterState


class SkipOut(BaseModel):
    reason: str = Field(description="e.g. no_meter_token, no_quantity")
    count: int
    latest: str = Field(description="the latest one's cause, and what to change so that such records are sent")
    latest_at: str = Field(description="when the latest one was skipped, RFC 3339 UTC")


class ExporterOut(BaseModel):
    exporter: str = Field(description="type/name, e.g. webhook/billing")
    configured: bool = Field(description="in a service::pipelines entry of the running config")
    sent_through_seq: int = Field(description="records up to this store sequence are delivered or dead")
    behind: int = Field(description="records stored past that position (before the exporter's filter)")
    attempts: int = Field(description="failed attempts of the batch in hand (0: none failing)")
    next_attempt_at: str | None = Field(description="when the batch in hand is tried again, RFC 3339 UTC")
    dead: int = Field(description="dead deliveries: records the exporter gave up on")
    pending_retry: int = Field(description="dead deliveries sent again and not delivered yet")
    last_error: str | None
    skipped: int = Field(
        description="records the exporter left out, never sent, so not billed through it (e.g. Fluxrate: no meter"
        " token for their type); not sent again later"
    )
    skips: list[SkipOut] = Field(description="the skipped records per reason")


class ExportersOut(BaseModel):
    exporters: list[ExporterOut]


def create_router(states: Callable[[], list[ExporterState]], configured: Callable[[], set[str]]) -> APIRouter:
    router = keyed_router("/api/v1", "exporters")

    @router.get("/exporters", response_model=ExportersOut, summary="Each exporter's state (admin scope)")
    def exporters(caller: CallerDep) -> ExportersOut:
        if not caller.allows("admin"):
            raise ApiError("API key lacks the 'admin' scope: exporters send every workspace's records", 403)
        active = configured()
        return ExportersOut(
            exporters=[
                ExporterOut(
                    exporter=s.exporter,
                    configured=s.exporter in active,
                    sent_through_seq=s.position,
                    behind=s.behind,
                    attempts=s.attempts,
                    next_attempt_at=format_ns(s.next_attempt_at) if s.attempts else None,
                    dead=s.dead,
                    pending_retry=s.pending,
                    last_error=s.last_error,
                    skipped=sum(skip.count for skip in s.skipped),
                    skips=[
                        SkipOut(reason=k.reason, count=k.count, latest=k.detail, latest_at=format_ns(k.updated_at))
                        for k in s.skipped
                    ],
                )
                for s in states()
            ]
        )

    return router
