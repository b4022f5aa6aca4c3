"""Fixtures for exporter tests: fake REST targets (tests/fakes/rest_target.py) that are stopped,
and checked for contract violations, at the end of each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.rest_target import Answer, Check, RestTarget


@pytest.fixture
def rest_target() -> Iterator[Callable[..., RestTarget]]:
    """`rest_target(check=..., default=(201, {}, {...}))`: a started RestTarget."""
    started: list[RestTarget] = []

    def make(check: Check | None = None, default: Answer = (200, {}, ""), **kwargs: Any) -> RestTarget:
        target = RestTarget(check=check, default=default, **kwargs).start()
        started.append(target)
        return target

    yield make
    for target in started:
        target.stop()
    assert [v for t in started for v in t.violations] == []
