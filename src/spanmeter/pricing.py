"""Cost of `llm` records: config overrides first, then genai-prices' data: the data bundled with
the installed genai-prices (offline, the default), or, with the opt-in price refresh
(`PriceRefresh`), the newest data genai-prices' own updater fetched. Each record's `price_ref`
names the data version that priced it.

Money is exact: Decimal in code, rounded half-even to whole nano-USD (the storage unit) so the
record, the database and the API agree to the digit. An unknown model is `cost_source=unknown`
with no cost, never a silent 0.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import genai_prices
import httpx
from genai_prices import data_snapshot
from genai_prices import types as genai_types
from genai_prices.update_prices import UpdatePrices

from spanmeter.money import from_nano, to_nano
from spanmeter.record import UsageRecord

log = logging.getLogger(__name__)

MILLION: Final = Decimal(1_000_000)
PRICE_DATA_VERSION: Final = f"genai-prices {genai_prices.__version__}"
# Provider names emitters use that genai-prices' own matching does not know.
PROVIDER_ALIASES: Final = {"x_ai": "x-ai", "az.ai.inference": "azure", "gcp.gen_ai": "google"}


@dataclass
class FetchedSnapshot(data_snapshot.DataSnapshot):
    """Price data fetched by `PriceRefresh`, with the version records name in `price_ref`."""

    version: str = PRICE_DATA_VERSION


def price_data_version(snapshot: data_snapshot.DataSnapshot) -> str:
    return snapshot.version if isinstance(snapshot, FetchedSnapshot) else PRICE_DATA_VERSION


class PriceRefresh(UpdatePrices):
    """Opt-in (`processors::pricing::refresh`): genai-prices' own background updater, fetching its
    price data from `url` every `update_interval` seconds so new models are priced without
    upgrading spanmeter. Until the first fetch succeeds, and whenever one fails (logged, retried at
    the next interval), the data in use stays as it was. The version of fetched data is the
    SHA-256 of what was fetched and when: `genai-prices data sha256:<12 hex> fetched <UTC time>`."""

    def fetch(self) -> data_snapshot.DataSnapshot | None:
        response = httpx.get(self.url, timeout=httpx.Timeout(10, connect=5), follow_redirects=True)
        response.raise_for_status()
        raw = json.loads(response.content)
        if not isinstance(raw, list):
            raise TypeError(f"price data from {self.url} is not a list of providers")
        providers = genai_types._providers_from_raw(raw)
        digest = hashlib.sha256(response.content).hexdigest()[:12]
        fetched = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        version = f"genai-prices data sha256:{digest} fetched {fetched}"
        log.info("price data refreshed from %s: %d providers, %s", self.url, len(providers), version)
        return FetchedSnapshot(providers, from_auto_update=True, version=version)


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


@functools.lru_cache(maxsize=1024)
def provider_for_model(model: str | None) -> str | None:
    """The provider genai-prices knows `model` under, for emitters that name no provider."""
    if not model:
        return None
    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, None, None)[0].id
    except LookupError:
        return None


Price = Decimal | genai_types.TieredPrices


@dataclass(slots=True, frozen=True)
class FlatPrices:
    """A model's token prices per million when they are the same at every time of request: then
    the cost is four multiplications, not a genai-prices calculation (~70 µs) per record.
    Tiered prices are "cliff" tiers by the call's input tokens, as genai-prices applies them.
    tests/test_pricing.py checks both give the same Decimal for every such model in the data."""

    input_mtok: Price
    output_mtok: Price
    cache_read_mtok: Price
    cache_write_mtok: Price
    ref: str
    # Untiered prices as whole units of nano-USD / 10**k per token, and 10**k: the hot path's cost
    # in integer arithmetic, equal to `to_nano(cost(...))` (tests/test_pricing.py checks it).
    _units: tuple[int, int, int, int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prices = (self.input_mtok, self.cache_read_mtok, self.cache_write_mtok, self.output_mtok)
        if not all(isinstance(p, Decimal) and p.is_finite() for p in prices):
            return
        per_token = [p * 1000 for p in prices if isinstance(p, Decimal)]  # USD per MTok → nano-USD per token
        k = max(0, *(-int(p.as_tuple().exponent) for p in per_token))
        units = [p.scaleb(k) for p in per_token]
        if k <= 18 and all(u == u.to_integral_value() for u in units):
            object.__setattr__(self, "_units", (10**k, *(int(u) for u in units)))

    def cost(self, record: UsageRecord) -> Decimal:
        """Input beyond the cache tokens at the input price (none if the counts are inconsistent),
        cache reads, cache writes and output at theirs."""
        cache_read = record.cache_read_tokens or 0
        cache_write = record.cache_write_tokens or 0
        plain_input = max((record.input_tokens or 0) - cache_read - cache_write, 0)
        tokens = record.input_tokens or 0
        return (
            plain_input * _at(self.input_mtok, tokens)
            + cache_read * _at(self.cache_read_mtok, tokens)
            + cache_write * _at(self.cache_write_mtok, tokens)
            + (record.output_tokens or 0) * _at(self.output_mtok, tokens)
        ) / MILLION


    def cost_nano(self, record: UsageRecord) -> int:
        """`cost` rounded half-even to whole nano-USD, as stored."""
        if self._units is None:
            return to_nano(self.cost(record))
        scale, per_input, per_cache_read, per_cache_write, per_output = self._units
        cache_read = record.cache_read_tokens or 0
        cache_write = record.cache_write_tokens or 0
        plain_input = max((record.input_tokens or 0) - cache_read - cache_write, 0)
        total = (
            plain_input * per_input
            + cache_read * per_cache_read
            + cache_write * per_cache_write
            + (record.output_tokens or 0) * per_output
        )
        nano, rest = divmod(total, scale)
        if 2 * rest > scale or (2 * rest == scale and nano % 2):  # half-even, as to_nano
            nano += 1
        return nano


def _at(price: Price, input_tokens: int) -> Decimal:
    """The price that applies to a call with this many input tokens (the highest tier passed)."""
    if isinstance(price, Decimal):
        return price
    for tier in reversed(price.tiers):
        if input_tokens > tier.start:
            return tier.price
    return price.base


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
    prices: FlatPrices = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Cache tokens without a price of their own cost the input price, as in genai-prices.
        prices = FlatPrices(
            input_mtok=self.input_mtok,
            output_mtok=self.output_mtok,
            cache_read_mtok=self.input_mtok if self.cache_read_mtok is None else self.cache_read_mtok,
            cache_write_mtok=self.input_mtok if self.cache_write_mtok is None else self.cache_write_mtok,
            ref=f"override {self.model}",
        )
        object.__setattr__(self, "prices", prices)

    def matches(self, record: UsageRecord, model: str) -> bool:
        return (
            fnmatch.fnmatchcase(model, self.model)
            and (self.provider is None or self.provider == record.provider)
            and (self.customer is None or self.customer == record.customer_id)
        )



CALC_PRICE: Final = object()
_UNRESOLVED: Final = object()
# Price keys a flat-priced model may have: token prices, and extras our usage never counts
# (searches, and 1-hour cache writes, which spans do not tell apart from other cache writes).
_FLAT_KEYS: Final = frozenset(
    {
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok",
        "web_searches_kcount",
        "storage_searches_kcount",
    }
)


def _resolve_flat_prices(
    provider: str | None, model: str, snapshot: data_snapshot.DataSnapshot | None = None
) -> FlatPrices | object | None:
    if snapshot is None:
        snapshot = data_snapshot.get_snapshot()
    try:
        found_provider, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    prices = info.prices
    # Price variants (service tiers) apply only with a price context, which spanmeter does not pass.
    if not isinstance(prices, genai_types.ModelPrice):
        return CALC_PRICE  # prices that change with the time of the request
    values = {k: v for k, v in prices.__dict__.items() if v is not None and not k.startswith("_")}
    if not set(values) <= _FLAT_KEYS or not all(isinstance(v, (Decimal, genai_types.TieredPrices)) for v in values.values()):
        return CALC_PRICE  # audio or image units: genai-prices decomposes those
    input_mtok: Price = values.get("input_mtok", Decimal(0))
    return FlatPrices(
        input_mtok=input_mtok,
        output_mtok=values.get("output_mtok", Decimal(0)),
        # genai-prices charges cache tokens at the input price when the model has no cache price
        cache_read_mtok=values.get("cache_read_mtok", input_mtok),
        cache_write_mtok=values.get("cache_write_mtok", input_mtok),
        ref=f"{price_data_version(snapshot)} {found_provider.id}/{info.id}",
    )


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
        # (provider, model) → its flat prices, CALC_PRICE (ask genai-prices per record), or None (unknown)
        self._flat: dict[tuple[str | None, str], FlatPrices | object | None] = {}
        self._snapshot: data_snapshot.DataSnapshot | None = None  # the data `_flat` was read from

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
            self._set(record, override.prices.cost_nano(record), "override", override.prices.ref)
        elif self.use_bundled_prices and (priced := self._bundled(record, model)) is not None:
            nano, ref = priced
            self._set(record, nano, "computed", ref)
        else:
            record.cost_source = "unknown"
        reported = record.reported_cost_usd
        if reported is None:
            return False
        differs = record.cost_usd is not None and abs(reported - record.cost_usd) > self.reported_cost_tolerance * max(
            record.cost_usd, reported
        )
        if record.cost_source == "unknown" or self.reported_cost_wins:
            self._set(record, to_nano(reported), "reported", "reported by the application")
        return differs

    def _bundled(self, record: UsageRecord, model: str) -> tuple[int, str] | None:
        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:  # new price data (PriceRefresh): read prices afresh
            self._flat.clear()
            self._snapshot = snapshot
        lookup = (record.provider, model)
        flat = self._flat.get(lookup, _UNRESOLVED)
        if flat is _UNRESOLVED:
            flat = self._flat[lookup] = _resolve_flat_prices(record.provider, model, snapshot)
        if flat is None:
            return None  # neither provider nor model known to genai-prices
        cached = (record.cache_read_tokens or 0) + (record.cache_write_tokens or 0)
        if isinstance(flat, FlatPrices) and (record.input_tokens or 0) >= cached:
            return flat.cost_nano(record), flat.ref
        # genai-prices' own calculation, which also says why inconsistent counts cannot be priced
        priced = self._calc_price(snapshot, record, model)
        return None if priced is None else (to_nano(priced[0]), priced[1])

    @staticmethod
    def _calc_price(
        snapshot: data_snapshot.DataSnapshot, record: UsageRecord, model: str
    ) -> tuple[Decimal, str] | None:
        """genai-prices' own calculation: for tiered, time-dependent or unusual prices."""
        usage = genai_prices.Usage(
            input_tokens=record.input_tokens or 0,
            output_tokens=record.output_tokens or 0,
            cache_read_tokens=record.cache_read_tokens,
            cache_write_tokens=record.cache_write_tokens,
        )
        when = datetime.fromtimestamp(record.occurred_at / 1e9, UTC)
        try:
            result = snapshot.calc(usage, model, record.provider, None, when)
        except LookupError:
            return None
        except ValueError as error:  # inconsistent counts, e.g. more cache reads than input
            log.warning("cannot price %s/%s: %s", record.provider, model, error)
            return None
        return result.total_price, f"{price_data_version(snapshot)} {result.provider.id}/{result.model.id}"

    @staticmethod
    def _set(record: UsageRecord, nano: int, source: str, ref: str) -> None:
        record.cost_usd = from_nano(nano)
        record.cost_source = source
        record.price_ref = ref
