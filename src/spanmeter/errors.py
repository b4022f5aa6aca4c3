"""spanmeter's exceptions, so callers catch at the level they need.

    SpanmeterError
    ├── ConfigError          the config file is wrong; carries the key path (`receivers::otlp::...`)
    ├── ListenError          a receiver cannot listen (port in use, address not on this host)
    ├── StorageError         the store failed to commit or to answer a read; the caller should retry
    │   └── Overloaded       the write queue is full; retry after `retry_after` seconds
    └── TooManyRecords       one request yields more records than the write queue holds: never retry
"""

from __future__ import annotations


class SpanmeterError(Exception):
    """Base of every error spanmeter raises on purpose."""


class ConfigError(SpanmeterError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class ListenError(SpanmeterError):
    """A receiver cannot listen on its endpoint; the message names the endpoint and its config key."""


class StorageError(SpanmeterError):
    """Records were not committed (nothing was acknowledged), or a read got no answer; the
    caller may retry.

    `reason` names the cause for metrics: disk_full, locked, read_only, io, cannot_open, other."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


class Overloaded(StorageError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, "overloaded")
        self.retry_after = retry_after


class TooManyRecords(SpanmeterError):
    """A request that can never fit the write queue (a permanent error: retrying cannot help)."""
