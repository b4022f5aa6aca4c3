"""Public adoption rows: suppression at k, no identities, ranking, methodology link, rate limit;
counts and ranking on both backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from spanmeter.record import Product
from tests.api.conftest import DAY_NS, Api, record
from tests.conftest import make_config, running_collector

ADOPTION = "/api/v1/adoption"
FAMILIES = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")


def events(
    product: str, developers: int, *, category: str = "sdk", days_ago: int = 1, activated: int = 0
) -> list:
    """Two events per developer (an evaluation, then an activation for the first `activated`)."""
    at = time.time_ns() - days_ago * DAY_NS
    out = []
    for d in range(developers):
        who = {"user_id": f"{product}-dev-{d}"} if d % 2 else {"email": f"dev{d}@{product}.example"}
        common = dict(kind="event", occurred_at=at, product=Product(id=product, name=product.title(), type="sdk",
                                                                  category=category),
                      account_domain=f"{product}-account-{d % 3}.example", **who)  # fmt: skip
        out.append(record(f"{product}-{d}-eval", type="SDK_INIT", event_family="evaluation", **common))
        family = "activation" if d < activated else "intent"
        out.append(record(f"{product}-{d}-2", type="FIRST_API_CALL", event_family=family, **common))
    return out


@contextmanager
def adoption_api(
    tmp_path: Path, k: int, requests: int = 1000, storage: dict[str, Any] | None = None
) -> Iterator[Api]:
    config = make_config(
        tmp_path,
        api={"adoption": {"min_developers": k, "rate_limit": {"requests": requests}}},
        **({"storage": storage} if storage is not None else {}),
    )
    with running_collector(config) as running:
        yield Api(running)


@pytest.fixture(params=[5, 4], ids=["k5", "k4"])
def k_api(request: pytest.FixtureRequest, tmp_path: Path, storage: dict[str, Any]) -> Iterator[Api]:
    with adoption_api(tmp_path, request.param, storage=storage) as api:
        yield api


def test_four_developers_are_suppressed_at_k5_and_shown_at_k4(k_api: Api) -> None:
    k_api.write(events("four", 4, activated=2))
    body = k_api.get(ADOPTION).json()
    k = body["minDevelopers"]
    if k == 5:
        assert body["rows"] == [] and body["suppressed"] == 1
        return
    assert body["suppressed"] == 0
    (row,) = body["rows"]
    assert row["rank"] == 1 and row["product"] == {
        "id": "four",
        "name": "Four",
        "type": "sdk",
        "category": "sdk",
    }
    assert row["activeDevelopers"] == 4 and row["accounts"] == 3 and row["events"] == 8
    assert row["activatedDevelopers"] == 2
    assert row["eventsByFamily"] == {"intent": 2, "evaluation": 4, "activation": 2, "retention": 0, "expansion": 0,
                                     "commercial": 0}  # fmt: skip
    # One row: it is its own maximum, so score = 100 x (0.5 + 0.3 + 0.2 x 2/4).
    assert row["adoptionScore"] == 90.0


def test_no_identity_in_any_response(tmp_path: Path) -> None:
    with adoption_api(tmp_path, 2) as api:
        records = events("alpha", 6, activated=3) + events("beta", 3) + events("gamma", 1)
        api.write(records)
        identities = {v for r in records for v in (r.user_id, r.email, r.account_domain) if v}
        bodies = [api.get(path, **params).text for path in (ADOPTION, "/api/v1/agent-rank")
                  for params in ({}, {"category": "sdk"}, {"period": "7d", "limit": 1})]  # fmt: skip
        bodies.append(api.get("/api/v1/adoption/methodology").text)
        assert api.get(ADOPTION).json()["suppressed"] == 1  # gamma, 1 developer
        for body in bodies:
            for identity in identities:
                assert identity not in body
            assert "dev-" not in body and "@" not in body


def test_ranking_period_category_limit_and_methodology(tmp_path: Path, storage: dict[str, Any]) -> None:
    with adoption_api(tmp_path, 2, storage=storage) as api:
        api.write(events("big", 8, activated=8) + events("small", 3) + events("other-cat", 5, category="docs")
                  + events("old", 9, days_ago=40))  # fmt: skip
        body = api.get(ADOPTION, period="30d").json()
        assert [r["product"]["id"] for r in body["rows"]] == ["big", "other-cat", "small"]
        assert [r["rank"] for r in body["rows"]] == [1, 2, 3]
        assert body["rows"][0]["adoptionScore"] == 100.0
        assert (
            body["rows"][0]["adoptionScore"]
            > body["rows"][1]["adoptionScore"]
            > body["rows"][2]["adoptionScore"]
        )
        assert "old" in [r["product"]["id"] for r in api.get(ADOPTION, period="90d").json()["rows"]]
        assert [r["product"]["id"] for r in api.get(ADOPTION, category="docs").json()["rows"]] == [
            "other-cat"
        ]
        assert len(api.get(ADOPTION, limit=1).json()["rows"]) == 1
        assert api.get("/api/v1/agent-rank").json()["rows"] == body["rows"]
        methodology = api.client.get(body["methodology"])
        assert methodology.status_code == 200
        assert methodology.json()["minDevelopers"] == 2 and "Suppression" in methodology.json()["text"]
        for bad in ({"period": "30"}, {"period": "0d"}, {"period": "366d"}, {"limit": 0}, {"limit": 101}):
            response = api.get(ADOPTION, **bad)
            assert response.status_code == 400 and response.json()["error"].startswith(next(iter(bad))), bad


def test_rate_limit_headers_and_429(tmp_path: Path) -> None:
    with adoption_api(tmp_path, 5, requests=3) as api:
        remaining = []
        for _ in range(3):
            response = api.get(ADOPTION)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "3"
            assert 0 < int(response.headers["x-ratelimit-reset"]) <= 60
            remaining.append(response.headers["x-ratelimit-remaining"])
        assert remaining == ["2", "1", "0"]
        limited = api.get("/api/v1/agent-rank")  # the alias shares the budget
        assert limited.status_code == 429
        assert limited.json()["ok"] is False and "rate limit" in limited.json()["error"]
        assert 0 < int(limited.headers["retry-after"]) <= 60
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert api.running.metric("spanmeter_rate_limited_total") == 1
        assert api.get("/api/v1/usage/records").status_code == 200  # only the public endpoints are limited
