"""How answers become outcomes, how long a retry waits, and the exporter's config checks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from click.testing import CliRunner

from spanmeter.cli import main
from spanmeter.config import parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters.base import Dead, Delivered, Paused, RetryLater
from spanmeter.exporters.policy import retry_after
from spanmeter.exporters.registry import exporter_types
from spanmeter.exporters.runner import MAX_RETRY_AFTER, RetryPolicy
from spanmeter.exporters.webhook import POLICY

URL = "https://billing.example.com/hooks/usage"


def answer(status: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    return httpx.Response(status, headers=headers, text=text, request=httpx.Request("POST", URL))


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, Delivered), (202, Delivered), (204, Delivered), (400, Dead), (413, Dead), (422, Dead), (401, Paused), (403, Paused),
     (404, Paused), (410, Paused), (301, Paused), (408, RetryLater), (409, RetryLater), (429, RetryLater),
     (500, RetryLater), (502, RetryLater), (503, RetryLater), (418, RetryLater)],
)
def test_each_status_has_its_outcome(status: int, kind: type) -> None:
    assert isinstance(POLICY.outcome(answer(status), URL), kind)


def test_reasons_name_the_status_the_endpoint_and_the_answer() -> None:
    dead = POLICY.outcome(answer(400, text='{"error":\n  "customer missing"}'), URL)
    assert isinstance(dead, Dead) and dead.reason == f'HTTP 400 from {URL}: {{"error": "customer missing"}}'
    paused = POLICY.outcome(answer(401), URL)
    assert isinstance(paused, Paused) and "secret" in paused.reason
    moved = POLICY.outcome(answer(308, {"location": "https://new.example.com/h"}), URL)
    assert isinstance(moved, Paused) and "https://new.example.com/h" in moved.reason
    too_big = POLICY.outcome(answer(413), URL)
    assert isinstance(too_big, Dead) and "max_batch" in too_big.reason
    long = POLICY.outcome(answer(500, text="x" * 10_000), URL)
    assert isinstance(long, RetryLater) and len(long.reason) < 400


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(None) is None and retry_after("soon") is None and retry_after("-5") is None
    later = retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True))
    assert later is not None and 85 <= later <= 91
    assert retry_after(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0
    limited = POLICY.outcome(answer(429, {"retry-after": "30"}), URL)
    assert isinstance(limited, RetryLater) and limited.retry_after == 30.0


def test_backoff_grows_with_jitter_up_to_max_interval_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial_interval=1.0, max_interval=10.0, randomization=0.5)
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (50, 10.0)):
        delays = [policy.delay(attempts, None) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= min(base * 1.5, 10.0)  # max_interval is the longest
        assert max(delays) - min(delays) > base * 0.3  # jittered, not in step
    assert policy.delay(1, 42.0) == 42.0  # a receiver's Retry-After wins over max_interval
    capped = RetryPolicy(initial_interval=1.0, max_interval=2.0)
    assert max(capped.delay(attempts, None) for attempts in (2, 3) for _ in range(200)) <= 2.0  # "retrying in 3.0 s" was seen
    assert policy.delay(1, 10**9) == MAX_RETRY_AFTER


def config_with(exporter: dict[str, object], name: str = "webhook/b") -> object:
    return parse_config({"exporters": {name: exporter}, "service": {"pipelines": {"usage": {"exporters": [name]}}}}, {})


def test_new_secret_makes_a_secret_the_config_takes() -> None:
    result = CliRunner().invoke(main, ["exporters", "new-secret"])
    assert result.exit_code == 0
    secret = result.output.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    config_with({"endpoint": URL, "secret": secret})


@pytest.mark.parametrize(
    ("exporter", "problem"),
    [
        ({"endpoint": "ftp://x/y"}, "exporters::webhook/b::endpoint: expected an http(s) URL"),
        ({"endpoint": "https:///path"}, "exporters::webhook/b::endpoint: expected an http(s) URL"),
        ({}, "exporters::webhook/b::endpoint: required key is missing"),
        ({"endpoint": URL, "secret": "whsec_short"}, "exporters::webhook/b::secret: not a Standard Webhooks secret"),
        ({"endpoint": URL, "secret": "whsec_" + base64.b64encode(b"x" * 100).decode()}, "not a Standard Webhooks secret"),
        ({"endpoint": URL, "secret": "whsec_!!notbase64!!"}, "not a Standard Webhooks secret"),
        ({"endpoint": URL, "max_batch": 0}, "exporters::webhook/b::max_batch"),
        ({"endpoint": URL, "filter": {"kinds": ["llm", "span"]}}, "exporters::webhook/b::filter::kinds::1"),
        ({"endpoint": URL, "retry_on_failure": {"max_elapsed_time": -1}}, "retry_on_failure::max_elapsed_time"),
        ({"endpoint": URL, "batch": 5}, "exporters::webhook/b::batch: unknown key"),
    ],
)
def test_bad_exporter_config_names_the_key_and_the_fix(exporter: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(exporter)
    assert problem in str(caught.value)


def test_unknown_exporter_type_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        config_with({"endpoint": URL}, name="nosuch/main")
    assert str(caught.value).splitlines()[1:] == [
        ("  - exporters::nosuch/main: unknown exporter type 'nosuch'; the types are "
         f"{', '.join(exporter_types())} (name exporters `<type>` or `<type>/<name>`, e.g. `webhook/billing`)")
    ]


def test_a_pipeline_naming_a_missing_exporter() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"service": {"pipelines": {"usage": {"exporters": ["webhook/nope"]}}}}, {})
    assert "service::pipelines::usage::exporters: references exporter 'webhook/nope' which is not configured" in str(
        caught.value
    )
