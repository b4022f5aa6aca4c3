"""Cost of `llm` records: config overrides first, then genai-prices' bundled data, offline.

Money is exact: Decimal in code, rounded half-even to whole nano-USD (the storage unit) so the
record, the database and the API agree to the digit. An unknown model is `cost_source=unknown`
with no cost, never a silent 0.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import genai_prices
from genai_prices import data_snapshot

from spanmeter.record import UsageRecord

log = logging.getLogger(__name__)

NANO: Final = Decimal("0.000000001")
MILLION: Final = Decimal(1_000_000)
PRICE_DATA_VERSION: Final = f"genai-prices {genai_prices.__version__}"
# Provider names emitters use that genai-prices' own matching does not know.
PROVIDER_ALIASES: Final = {"x_ai": "x-ai", "az.ai.inference": "azure", "gcp.gen_ai": "google"}


@dataclass(slots=True, frozen=True)
class PriceOverride:
    """A user's own price per million tokens for models matching `model` (fnmatch pattern)."""

    model: str
    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    provider: str | None = None
    customer: str | None = None

    def matches(self, record: UsageRecord, model: str) -> bool:
        return (
            fnmatch.fnmatchcase(model, self.model)
            and (self.provider is None or self.provider == record.provider)
            and (self.customer is None or self.customer == record.customer_id)
        )

    def cost(self, record: UsageRecord) -> Decimal:
        cache_read = record.cache_read_tokens or 0
        cache_write = record.cache_write_tokens or 0
        plain_input = max((record.input_tokens or 0) - cache_read - cache_write, 0)
        total = (
            plain_input * self.input_mtok
            + cache_read * (self.cache_read_mtok if self.cache_read_mtok is not None else self.input_mtok)
            + cache_write * (self.cache_write_mtok if self.cache_write_mtok is not None else self.input_mtok)
            + (record.output_tokens or 0) * self.output_mtok
        )
        return total / MILLION


def to_nano(amount: Decimal) -> int:
    return int(amount.quantize(NANO, rounding=ROUND_HALF_EVEN) / NANO)


def from_nano(nano: int) -> Decimal:
    return (Decimal(nano) * NANO).normalize() if nano else Decimal(0)


@functools.lru_cache(maxsize=1024)
def normalise_provider(name: str | None) -> str | None:
    """genai-prices' provider id for an emitter's provider name (e.g. `aws.bedrock` → `aws`)."""
    if not name:
        return None
    lowered = name.lower()
    lowered = PROVIDER_ALIASES.get(lowered, lowered)
    try:
        return data_snapshot.get_snapshot().find_provider(None, lowered, None).id
    except LookupError:
        return lowered


class Pricer:
    def __init__(
        self,
        overrides: tuple[PriceOverride, ...] = (),
        *,
        use_bundled_prices: bool = True,
        reported_cost_wins: bool = False,
        reported_cost_tolerance: Decimal = Decimal("0.05"),
    ) -> None:
        self.overrides = overrides
        self.use_bundled_prices = use_bundled_prices
        self.reported_cost_wins = reported_cost_wins
        self.reported_cost_tolerance = reported_cost_tolerance
        self._unknown: set[tuple[str | None, str]] = set()

    def price(self, record: UsageRecord) -> bool:
        """Set cost_usd, cost_source and price_ref of an `llm` record in place.

        Returns True when the app reported a cost that differs from ours by more than the tolerance.
        """
        if record.kind != "llm":
            return False
        model = record.response_model or record.request_model
        if record.input_tokens is None and record.output_tokens is None:
            # Nothing to price (a failed call without usage): no cost, and not an unknown model.
            record.cost_source = "none"
        elif model is None:
            record.cost_source = "unknown"
        elif override := next((o for o in self.overrides if o.matches(record, model)), None):
            self._set(record, override.cost(record), "override", f"override {override.model}")
        elif self.use_bundled_prices and (priced := self._bundled(record, model)) is not None:
            cost, ref = priced
            self._set(record, cost, "computed", ref)
        else:
            record.cost_source = "unknown"
        reported = record.reported_cost_usd
        if reported is None:
            return False
        differs = record.cost_usd is not None and abs(reported - record.cost_usd) > self.reported_cost_tolerance * max(
            record.cost_usd, reported
        )
        if record.cost_source == "unknown" or self.reported_cost_wins:
            self._set(record, reported, "reported", "reported by the application")
        return differs

    def _bundled(self, record: UsageRecord, model: str) -> tuple[Decimal, str] | None:
        lookup = (record.provider, model)
        if lookup in self._unknown:
            return None
        usage = genai_prices.Usage(
            input_tokens=record.input_tokens or 0,
            output_tokens=record.output_tokens or 0,
            cache_read_tokens=record.cache_read_tokens,
            cache_write_tokens=record.cache_write_tokens,
        )
        when = datetime.fromtimestamp(record.occurred_at / 1e9, UTC)
        try:
            result = genai_prices.calc_price(usage, model, provider_id=record.provider, genai_request_timestamp=when)
        except LookupError:
            self._unknown.add(lookup)
            return None
        except ValueError as error:  # inconsistent counts, e.g. more cache reads than input
            log.warning("cannot price %s/%s: %s", record.provider, model, error)
            return None
        return result.total_price, f"{PRICE_DATA_VERSION} {result.provider.id}/{result.model.id}"

    @staticmethod
    def _set(record: UsageRecord, cost: Decimal, source: str, ref: str) -> None:
        record.cost_usd = from_nano(to_nano(cost))
        record.cost_source = source
        record.price_ref = ref
