"""Monthly quotas of API keys (`spanmeter keys create/update --quota`), checked before a REST
ingest request stores anything.

A quota limits the key's workspace in the current calendar month (UTC, by the records' time):
records of every kind, or their cost. It is counted from the store's daily rollups, so it holds
across restarts and across processes on one database, and costs a read of at most 31 rows. The
request that crosses the limit is still stored whole (a batch is never cut in two); the next one
is refused with 402.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from spanmeter.auth import Principal
from spanmeter.money import from_nano
from spanmeter.receivers.rest.body import RestError
from spanmeter.record import decimal_string
from spanmeter.store.port import QueryStore


def month_bounds(now_ns: int) -> tuple[int, int, str]:
    """[start, end) of the calendar month (UTC) of `now_ns`, in ns, and its name (2026-12)."""
    now = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000_000, int(end.timestamp()) * 1_000_000_000, f"{now:%Y-%m}"


class QuotaGuard:
    def __init__(self, store: QueryStore, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.clock = clock

    async def check(self, principal: Principal | None) -> None:
        """Raise a 402 RestError when the caller's key has used up a quota of this month."""
        if principal is None or (principal.quota_records is None and principal.quota_cost_nano is None):
            return
        start, end, month = month_bounds(self.clock())
        records, cost_nano = await asyncio.to_thread(self.store.records_and_cost, principal.workspace, start, end)
        if principal.quota_records is not None and records >= principal.quota_records:
            raise RestError(
                402, f"Monthly quota exceeded: {records} of {principal.quota_records} records used in {month} (UTC)"
            )
        if principal.quota_cost_nano is not None and cost_nano >= principal.quota_cost_nano:
            used, limit = (decimal_string(from_nano(n)) for n in (cost_nano, principal.quota_cost_nano))
            raise RestError(402, f"Monthly quota exceeded: ${used} of ${limit} used in {month} (UTC)")
