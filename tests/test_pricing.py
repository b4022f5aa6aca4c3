"""The fast path (flat prices resolved once per model) gives the very same Decimal as
genai-prices' own calc_price, for every flat-priced model in the bundled data."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.money import to_nano
from spanmeter.pricing import CALC_PRICE, FlatPrices, Pricer, _resolve_flat_prices
from spanmeter.record import UsageRecord

WHEN_NS = 1_763_900_000_000_000_000
MODELS = [(p.id, m.id) for p in data_snapshot.get_snapshot().providers for m in p.models]


def record(provider: str, model: str, inp: int, out: int, cache_read: int | None, cache_write: int | None) -> UsageRecord:
    return UsageRecord(idempotency_key="k", kind="llm", type="chat", occurred_at=WHEN_NS, provider=provider,
                       response_model=model, input_tokens=inp, output_tokens=out,
                       cache_read_tokens=cache_read, cache_write_tokens=cache_write)


def reference(r: UsageRecord) -> genai_prices.types.PriceCalculation:
    usage = genai_prices.Usage(input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                               cache_read_tokens=r.cache_read_tokens, cache_write_tokens=r.cache_write_tokens)
    return genai_prices.calc_price(usage, r.response_model or "", provider_id=r.provider,
                                   genai_request_timestamp=datetime.fromtimestamp(WHEN_NS / 1e9, UTC))


def test_most_models_take_the_fast_path() -> None:
    resolved = [_resolve_flat_prices(p, m) for p, m in MODELS]
    flat = sum(isinstance(r, FlatPrices) for r in resolved)
    assert flat > 0.6 * len(MODELS)
    assert any(r is CALC_PRICE for r in resolved)  # tiered and time-dependent prices exist, and fall back


def test_fast_path_equals_calc_price_for_every_flat_model() -> None:
    rng = random.Random(7)
    checked = 0
    for provider, model in MODELS:
        flat = _resolve_flat_prices(provider, model)
        if not isinstance(flat, FlatPrices):
            continue
        for _ in range(3):
            cache_read = rng.choice([None, 0, rng.randint(0, 5000)])
            cache_write = rng.choice([None, 0, rng.randint(0, 5000)])
            inp = (cache_read or 0) + (cache_write or 0) + rng.randint(0, 10**6)
            r = record(provider, model, inp, rng.randint(0, 10**5), cache_read, cache_write)
            expected = reference(r)
            assert flat.cost(r) == expected.total_price, (provider, model)
            assert flat.cost_nano(r) == to_nano(expected.total_price), (provider, model)
            assert flat.ref.endswith(f"{expected.provider.id}/{expected.model.id}")
            checked += 1
    assert checked > 1000


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(MODELS) - 1),
    plain=st.integers(min_value=0, max_value=10**9),
    out=st.integers(min_value=0, max_value=10**8),
    cache_read=st.one_of(st.none(), st.integers(min_value=0, max_value=10**8)),
    cache_write=st.one_of(st.none(), st.integers(min_value=0, max_value=10**8)),
)
def test_pricer_equals_calc_price(index: int, plain: int, out: int, cache_read: int | None, cache_write: int | None) -> None:
    provider, model = MODELS[index]
    r = record(provider, model, plain + (cache_read or 0) + (cache_write or 0), out, cache_read, cache_write)
    Pricer().price(r)
    try:
        expected = reference(r).total_price
    except (LookupError, ValueError):
        assert r.cost_source == "unknown"
        return
    from spanmeter.pricing import from_nano, to_nano

    assert r.cost_source == "computed"
    assert r.cost_usd == from_nano(to_nano(expected))


@pytest.mark.parametrize(("input_tokens", "nano"), [(1, 0), (3, 2), (5, 2), (7, 4), (2, 1)])
def test_integer_cost_rounds_half_even_like_the_decimal_cost(input_tokens: int, nano: int) -> None:
    # $0.0005 per million tokens is half a nano-USD per token: every odd count ends on a half.
    flat = FlatPrices(Decimal("0.0005"), Decimal("0.123456789"), Decimal(0), Decimal(0), ref="t")
    r = record("openai", "m", input_tokens, 0, None, None)
    assert flat.cost_nano(r) == nano == to_nano(flat.cost(r))
    r = record("openai", "m", input_tokens, 1_000_003, None, None)
    assert flat.cost_nano(r) == to_nano(flat.cost(r))


def test_tiered_prices_switch_at_the_same_input_as_genai_prices() -> None:
    from genai_prices import types as genai_types

    tiered = []
    for provider, model in MODELS:
        flat = _resolve_flat_prices(provider, model)
        if isinstance(flat, FlatPrices) and isinstance(flat.input_mtok, genai_types.TieredPrices):
            tiered.append((provider, model, flat))
    assert tiered  # e.g. claude-sonnet-4-5 above 200k input tokens
    for provider, model, flat in tiered:
        for start in {tier.start for tier in flat.input_mtok.tiers}:  # type: ignore[union-attr]
            for inp in (start - 1, start, start + 1, 3 * start):
                r = record(provider, model, inp, 700, inp // 4, inp // 10)
                assert flat.cost(r) == reference(r).total_price, (provider, model, inp)


@given(
    st.decimals(min_value=Decimal(-(10**9)), max_value=Decimal(10**9), allow_nan=False, allow_infinity=False, places=None)
    | st.builds(lambda n, e: Decimal(n).scaleb(-e), st.integers(-(10**18), 10**18), st.integers(0, 20))
)
def test_to_nano_rounds_half_even_to_whole_nano_dollars(amount: Decimal) -> None:
    from decimal import ROUND_HALF_EVEN, localcontext

    with localcontext() as ctx:
        ctx.prec = 60  # the reference itself must not round
        expected = int((amount * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert to_nano(amount) == expected
    assert to_nano(Decimal("0.0000000005")) == 0 and to_nano(Decimal("0.0000000015")) == 2  # ties to even
