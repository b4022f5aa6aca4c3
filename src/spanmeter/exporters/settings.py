"""The settings every exporter type shares, as config models its own config extends.

An exporter type's config subclasses `ExporterConfig` (or `HttpExporterConfig` for one that
sends HTTP requests) and adds its own keys; the runner reads the shared ones (batch, flush
interval, start, filter, retry). Every key has a description: collector_config/exporters.yaml
shows each with its default, and a test checks that file against these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spanmeter.store.outbox import ExportFilter


class SettingsModel(BaseModel):
    """A config block: unknown keys are errors, values do not change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportFilterConfig(SettingsModel):
    workspaces: list[str] = Field([], description="only these workspaces' records (default: all)")
    kinds: list[Literal["llm", "event", "meter"]] = Field([], description="only these kinds (default: all)")
    types: list[str] = Field([], description="only these types, e.g. chat, plan_upgraded (default: all)")
    customers: list[str] = Field([], description="only these customer ids (default: all)")

    def export_filter(self) -> ExportFilter:
        return ExportFilter(tuple(self.workspaces), tuple(self.kinds), tuple(self.types), tuple(self.customers))


class RetryOnFailure(SettingsModel):
    initial_interval: float = Field(1.0, gt=0, description="seconds before the first retry of a failed batch")
    max_interval: float = Field(60.0, gt=0, description="longest wait between two attempts (and while paused)")
    max_elapsed_time: float = Field(
        3600.0,
        ge=0,
        description="seconds a batch is retried before its records become dead deliveries; 0: forever. Time"
        " paused or in a long back-off does not count",
    )
    long_interval: float = Field(
        10_800.0,
        gt=0,
        description="seconds between attempts when the target says to come back much later (e.g. 402, plan"
        " quota used up); records are kept, never made dead by this",
    )


class ExporterConfig(SettingsModel):
    """What every exporter type has: how the runner claims, filters and retries its batches."""

    max_batch: int = Field(100, ge=1, le=10_000, description="records per batch at most")
    flush_interval: float = Field(1.0, gt=0, description="seconds between looks for new records when idle")
    start_at: Literal["now", "beginning"] = Field(
        "now", description="a new exporter sends records stored from now on, or every stored record"
    )
    filter: ExportFilterConfig = Field(ExportFilterConfig(), description="which records it sends")
    retry_on_failure: RetryOnFailure = Field(RetryOnFailure(), description="how failed batches are retried")


class HttpExporterConfig(ExporterConfig):
    """An exporter that sends HTTP requests to `endpoint`. A type may redeclare `endpoint` with its
    own description or default; the URL check still applies."""

    endpoint: str = Field(description="http(s) URL of the target")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for the target's answer")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


def http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL, else a ValueError with an example."""
    scheme, sep, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or rest.startswith("/"):
        raise ValueError(f"expected an http(s) URL such as https://billing.example.com/hooks/usage, got {value!r}")
    return value
