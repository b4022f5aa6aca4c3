"""Public adoption rows (`GET /api/v1/adoption`, alias `/api/v1/agent-rank`) and their methodology.

Aggregates only: per product, counts of developers, accounts and events. Rows whose cohort is
below k distinct developers are left out and counted (`suppressed`); no developer id, email or
account domain ever leaves the store (the SQL returns counts only). Rate-limited per client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from spanmeter.api.errors import ApiError, ErrorBody
from spanmeter.api.models import AdoptionProduct, AdoptionResponse, AdoptionRow, Methodology
from spanmeter.api.ratelimit import RateLimiter
from spanmeter.api.usage import principal, single_values
from spanmeter.auth import Principal
from spanmeter.metrics import Metrics
from spanmeter.record import format_ns
from spanmeter.store.constants import DAY_NS
from spanmeter.store.port import QueryStore
from spanmeter.store.queries import ProductAdoption

METHODOLOGY_VERSION: Final = "1"
WEIGHTS: Final = {"developers": 0.5, "accounts": 0.3, "activation": 0.2}
# 1d to 365d, spelled in the schema so a client (or a fuzzer) knows the valid values up front.
PERIOD_PATTERN: Final = r"^([1-9]|[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-5])d$"

METHODOLOGY_TEXT: Final = f"""# Adoption rows: methodology and ranking policy (version {METHODOLOGY_VERSION})

**Source.** Product events (`kind = event`) that name a product (`product.id`, else `product.name`),
stored in this workspace, whose `occurredAt` is within the requested period (the last N days up
to now, e.g. `30d`). `category` keeps products of that `product.category`.

**Counts per product.**
- *active developers*: distinct developers with at least one event; a developer is the event's
  `user_id`, else its `email`.
- *accounts*: distinct `account_domain` values.
- *events*: events in the period, and per event family (intent, evaluation, activation,
  retention, expansion, commercial).
- *activated developers*: developers with at least one activation, retention, expansion or
  commercial event.

**Suppression.** A product with fewer than k distinct developers (k = `minDevelopers` in every
response; configured, default 5) is not shown; the response counts such rows in `suppressed`.
Only counts are published: never a developer id, an email or an account domain.

**Adoption score** (0-100, one decimal), over the rows that are shown:

    score = 100 x ( {WEIGHTS["developers"]} x ln(1 + D) / ln(1 + Dmax)
                  + {WEIGHTS["accounts"]} x ln(1 + A) / ln(1 + Amax)
                  + {WEIGHTS["activation"]} x Dact / D )

D = active developers, A = accounts, Dact = activated developers; Dmax and Amax are the largest
values among the shown rows of the same query (a term whose maximum is 0 counts 0). The logarithm
rewards breadth without letting one very large product flatten the others; the activation ratio
rewards products whose developers get past evaluation.

**Ranking.** By score, then active developers, then product id or name; `limit` rows are
returned. Scores are relative to the rows of the same query (category and period), so compare
them within one response.

**Rate limit.** Per client address (or API key); every response carries `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the window resets); over the
limit the answer is 429 with `Retry-After`.
"""


def create_router(
    store: QueryStore,
    *,
    min_developers: int,
    limiter: RateLimiter,
    metrics: Metrics,
    clock: Callable[[], int] = time.time_ns,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["adoption"], dependencies=[Depends(single_values)])

    def rate_limit(
        request: Request, response: Response, caller: Annotated[Principal, Depends(principal)]
    ) -> Principal:
        client = caller.key_id or (request.client.host if request.client else "unknown")
        decision = limiter.check(client)
        if not decision.allowed:
            metrics.rate_limited.inc()
            raise ApiError("rate limit exceeded; retry after Retry-After seconds", 429, decision.headers())
        response.headers.update(decision.headers())
        return caller

    responses: dict[int | str, dict[str, object]] = {
        400: {"model": ErrorBody, "description": "invalid parameter"},
        429: {"model": ErrorBody, "description": "rate limit exceeded; see Retry-After"},
        "4XX": {"model": ErrorBody, "description": "other client errors"},
    }

    def adoption(
        request: Request,
        category: Annotated[str | None, Query(max_length=200, description="product category")] = None,
        period: Annotated[
            str, Query(pattern=PERIOD_PATTERN, description="the last N days: 7d, 30d, 90d (1d-365d)")
        ] = "30d",
        limit: Annotated[int, Query(ge=1, le=100, description="rows")] = 20,
        caller: Principal = Depends(rate_limit),  # noqa: B008 - FastAPI's dependency idiom
    ) -> AdoptionResponse:
        now = clock()
        found = store.product_adoption(caller.workspace, now - int(period[:-1]) * DAY_NS, category)
        shown = [row for row in found if row.developers >= min_developers]
        return AdoptionResponse(
            period=period,
            category=category,
            generated_at=format_ns(now),
            min_developers=min_developers,
            suppressed=len(found) - len(shown),
            methodology=str(request.url_for("adoption_methodology")),
            rows=rank(shown)[:limit],
        )

    router.add_api_route(
        "/adoption", adoption, methods=["GET"], response_model=AdoptionResponse, responses=responses,
        summary="Public adoption rows per product (aggregates only, small cohorts suppressed)",
    )  # fmt: skip
    router.add_api_route(
        "/agent-rank", adoption, methods=["GET"], response_model=AdoptionResponse, responses=responses,
        summary="Alias of /api/v1/adoption", operation_id="agent_rank",
    )  # fmt: skip

    @router.get("/adoption/methodology", response_model=Methodology, name="adoption_methodology",
                summary="How adoption rows are counted, suppressed, scored and ranked")  # fmt: skip
    def methodology() -> Methodology:
        return Methodology(
            version=METHODOLOGY_VERSION, min_developers=min_developers, weights=WEIGHTS, text=METHODOLOGY_TEXT
        )

    return router


def rank(rows: list[ProductAdoption]) -> list[AdoptionRow]:
    d_max = max((r.developers for r in rows), default=0)
    a_max = max((r.accounts for r in rows), default=0)

    def score(r: ProductAdoption) -> float:
        value = WEIGHTS["developers"] * _share(r.developers, d_max) + WEIGHTS["accounts"] * _share(
            r.accounts, a_max
        )
        if r.developers:
            value += WEIGHTS["activation"] * r.activated_developers / r.developers
        return round(100 * value, 1)

    scored = sorted(
        ((score(r), r) for r in rows),
        key=lambda pair: (-pair[0], -pair[1].developers, pair[1].product_id or pair[1].product_name or ""),
    )
    return [
        AdoptionRow(
            rank=i,
            product=AdoptionProduct(
                id=r.product_id, name=r.product_name, type=r.product_type, category=r.product_category
            ),
            active_developers=r.developers,
            accounts=r.accounts,
            events=r.events,
            activated_developers=r.activated_developers,
            events_by_family=r.families,
            adoption_score=s,
        )
        for i, (s, r) in enumerate(scored, start=1)
    ]


def _share(value: int, maximum: int) -> float:
    return math.log1p(value) / math.log1p(maximum) if maximum > 0 else 0.0
