"""Bad arguments fail in the app, naming the argument, with the collector's own rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from spanmeter.sdk import configure, meter, track_event, usage_context


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"family": "signup"}, ValueError, ("family must be one of intent, evaluation, activation, retention, "
                                        "expansion, commercial; got 'signup'")),
    ({"family": ""}, ValueError, "family must not be empty"),
    ({"product": {"sku": "x"}}, ValueError, "product has unknown keys ['sku']"),
    ({"product": 7}, TypeError, "product must be a product id or a mapping, got int"),
    ({"email": 5}, TypeError, "email must be a string, got int"),
    ({"idempotency_key": "k" * 4097}, ValueError, "idempotency_key is 4097 characters long; the limit is 4096"),
    ({"plan": None}, TypeError, "plan must be a string, got NoneType"),
])
def test_track_event_refuses(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        track_event("signed_up", **kwargs)
    assert str(raised.value).startswith(message)


def test_track_event_refuses_an_empty_name() -> None:
    with pytest.raises(ValueError, match="^name must not be empty$"):
        track_event("")


@pytest.mark.parametrize(("quantity", "message"), [
    (0, "quantity must be > 0, got 0"),
    (-2, "quantity must be > 0, got -2"),
    ("0.0", "quantity must be > 0, got 0.0"),
    (float("nan"), "quantity must be a finite number, got nan"),
    (float("inf"), "quantity must be a finite number, got inf"),
    (10**15 + 1, "quantity is 1000000000000001, above the limit of 1000000000000000"),
    ("12 pages", "quantity must be a number, got '12 pages'"),
    (True, "quantity must be a number, got bool"),
    (None, "quantity must be a number, got NoneType"),
])
def test_meter_refuses(quantity: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        meter("pages", quantity)
    assert str(raised.value) == message


@pytest.mark.parametrize("quantity", [1, 0.1, Decimal("0.000001"), "12.5", 10**15])
def test_meter_accepts(quantity: Any) -> None:
    meter("pages", quantity)  # no tracer provider here: nothing is sent, nothing raised


def test_usage_context_refuses() -> None:
    with pytest.raises(ValueError, match="^customer_id must not be empty$"):
        usage_context(customer_id="")
    with pytest.raises(TypeError, match="^user_id must be a string, got int$"):
        usage_context(user_id=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^feature is 5000 characters long; the limit is 4096$"):
        usage_context(feature="f" * 5000)
    with pytest.raises(TypeError, match="^plan must be a string, got a key-value list$"):
        usage_context(plan={"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4318", "grpc://127.0.0.1:4317", "http://"])
def test_configure_refuses_an_endpoint_that_is_no_url(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint must be an http:// or https:// URL such as http://127.0.0.1:4318"):
        configure(endpoint=endpoint)
