"""Fixtures for the compatible REST ingest: a running collector spoken to with httpx over a real
socket, records read back through `GET /api/v1/usage/records`, API keys made as the CLI makes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spanmeter.auth import new_key
from tests.conftest import RunningCollector, make_config, running_collector


class Rest:
    """A running collector and an httpx client on its HTTP port."""

    def __init__(self, running: RunningCollector) -> None:
        self.running = running
        self.store = running.collector.store
        self.http = httpx.Client(base_url=running.http_url, timeout=30)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST `body` as JSON (or raw `content`), with `key` as a Bearer token unless headers say otherwise."""
        sent = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
        sent.update(headers or {})
        return self.http.post(path, json=body if content is None else None, content=content, headers=sent)

    def items(self, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Every record item of the caller's workspace (newest first), through the query API."""
        headers = {"authorization": f"Bearer {key}"} if key else {}
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.http.get(
                "/api/v1/usage/records", params={"take": 500, **params, **({"cursor": cursor} if cursor else {})},
                headers=headers,
            )  # fmt: skip
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["cursor"]
            if cursor is None:
                return items

    def key(self, workspace: str = "default", **quota: int | None) -> tuple[str, str]:
        """(key, key id) of a new active ingest+read key; `quota`: quota_records / quota_cost_nano."""
        secret, record = new_key(workspace, "test", ("ingest", "read"))
        self.store.create_key(record)
        if quota:
            self.store.set_key_quota(record.id, quota.get("quota_records"), quota.get("quota_cost_nano"))
        return secret, record.id

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[Rest]:
    with running_collector(make_config(tmp_path)) as running:
        client = Rest(running)
        yield client
        client.close()


@pytest.fixture
def auth_rest(tmp_path: Path) -> Iterator[Rest]:
    with running_collector(make_config(tmp_path, auth={"enabled": True})) as running:
        client = Rest(running)
        yield client
        client.close()


@pytest.fixture(scope="module")
def shared_rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    """One collector for a module's many refusal cases (each starts from what the others left:
    they store nothing, or say what they add)."""
    with running_collector(make_config(tmp_path_factory.mktemp("rest"))) as running:
        client = Rest(running)
        yield client
        client.close()
