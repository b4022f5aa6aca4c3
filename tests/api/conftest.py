"""Fixtures for the query API: a running collector, records written through the store's own
`write`, API keys made the way `spanmeter keys create` makes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spanmeter.auth import new_key
from spanmeter.record import UsageRecord, new_record_id
from tests.conftest import RunningCollector, make_config, running_collector

DAY_NS = 86_400 * 1_000_000_000


def record(
    key: str, *, kind: str = "llm", type: str = "chat", occurred_at: int | None = None, **fields: Any
) -> UsageRecord:
    """A record as the converters build one: id and received_at set, tokens for llm records."""
    now = time.time_ns()
    if kind == "llm":
        fields.setdefault("input_tokens", 100)
        fields.setdefault("output_tokens", 20)
        fields.setdefault("total_tokens", fields["input_tokens"] + fields["output_tokens"])
    if kind == "meter":
        fields.setdefault("meter", type)
        fields.setdefault("quantity", Decimal(1))
    if kind == "event":
        fields.setdefault("event_name", type)
    return UsageRecord(
        idempotency_key=key,
        kind=kind,
        type=type,
        occurred_at=now if occurred_at is None else occurred_at,
        id=new_record_id(),
        received_at=now,
        **fields,
    )


class Api:
    """A running collector, a TestClient on its HTTP app, and helpers to write records and keys."""

    def __init__(self, running: RunningCollector) -> None:
        self.running = running
        self.collector = running.collector
        self.store = running.collector.store
        self.client = TestClient(running.collector.asgi_app)  # what uvicorn serves

    def write(self, records: list[UsageRecord]) -> None:
        result = self.running.call(self.store.write(records))
        assert len(result.inserted) == len(records)

    def key(
        self, workspace: str = "default", scopes: tuple[str, ...] = ("ingest", "read")
    ) -> tuple[str, str]:
        """(key, key id) of a new active key."""
        secret, key = new_key(workspace, "test", scopes)
        self.store.create_key(key)
        return secret, key.id

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return self.client.get(path, params=params, headers=headers)


@pytest.fixture
def api(tmp_path: Path, storage: dict[str, Any]) -> Iterator[Api]:
    with running_collector(make_config(tmp_path, storage=storage)) as running:
        yield Api(running)


@pytest.fixture
def auth_api(tmp_path: Path, storage: dict[str, Any]) -> Iterator[Api]:
    with running_collector(make_config(tmp_path, storage=storage, auth={"enabled": True})) as running:
        yield Api(running)
