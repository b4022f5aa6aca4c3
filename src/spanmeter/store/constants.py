"""Constants every backend and the query API share."""

from __future__ import annotations

from typing import Final

DAY_NS: Final = 86_400 * 1_000_000_000  # a UTC day: the unit of the daily rollups and series
HOUR_NS: Final = 3_600 * 1_000_000_000  # a UTC hour: the unit of the adoption rows' hourly rollup
ALL_CUSTOMERS: Final = ""  # the customer of a rollup row that totals a whole workspace (records never have "")
