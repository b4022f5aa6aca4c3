"""The dashboard at /ui in a real headless Chromium (Playwright driving the system's `chromium`):
with auth on it asks for a key, the overview shows a known data set's numbers, a filter narrows the
records, an exporter's dead deliveries show, a wrong key gets a clear message. Screenshots go to
test-artifacts/ui/ (git-ignored)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from spanmeter.auth import new_key
from tests.api.conftest import DAY_NS, record
from tests.conftest import RunningCollector, make_config, running_collector
from tests.fakes.webhook_receiver import WebhookReceiver

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs the system chromium (.ci/run installs it)"
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


class Dashboard:
    def __init__(self, running: RunningCollector, admin_key: str, dead: int) -> None:
        self.running, self.admin_key, self.dead = running, admin_key, dead
        self.url = f"{running.http_url}/ui/"


def _priced(key: str, cost: str, **fields: Any) -> Any:
    return record(
        key, cost_usd=Decimal(cost), cost_source="computed", price_ref=f"genai-prices:test:{key}", **fields
    )


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp_path = tmp_path_factory.mktemp("ui")
    receiver = WebhookReceiver(secret=SECRET).start()
    receiver.answer_next((400, {}, '{"error": "unknown customer acme"}'))
    config = make_config(
        tmp_path,
        auth={"enabled": True},
        exporters={"webhook/billing": {"endpoint": receiver.url, "secret": SECRET, "flush_interval": 0.05,
                                       "max_batch": 100, "retry_on_failure": {"initial_interval": 0.05}}},
        service={"pipelines": {"usage": {"exporters": ["webhook/billing"]}}},
    )  # fmt: skip
    today = time.time_ns() // DAY_NS * DAY_NS
    with running_collector(config) as running:
        secret, key = new_key("default", "ui", ("admin",))
        running.collector.store.create_key(key)
        written = running.call(running.collector.store.write([
            _priced("a1", "1.25", customer_id="acme", occurred_at=today + 1, response_model="gpt-4o", total_tokens=1000),
            _priced("a2", "0.75", customer_id="acme", occurred_at=today + 2, response_model="gpt-4o", total_tokens=500),
            _priced("g1", "0.5", customer_id="globex", occurred_at=today + 3, response_model="claude", total_tokens=200),
            _priced("old", "3", customer_id="globex", occurred_at=today - 40 * DAY_NS, response_model="claude",
                    total_tokens=7000),
        ]))  # fmt: skip
        assert len(written.inserted) == 4
        deadline = time.monotonic() + 20
        while not any(s.dead for s in running.collector.store.exporter_states()):
            assert time.monotonic() < deadline, "the refused batch never became dead deliveries"
            time.sleep(0.05)
        dead = running.collector.store.exporter_states()[0].dead
        yield Dashboard(running, secret, dead)
    receiver.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Any, dashboard: Dashboard, fragment: str = "") -> None:
    page.goto(dashboard.url + fragment)
    page.wait_for_selector("#key-panel:not([hidden])")
    page.fill("#key-input", dashboard.admin_key)
    page.click("#key-form button[type=submit]")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_overview_shows_the_known_numbers(page: Any, dashboard: Dashboard) -> None:
    sign_in(page, dashboard)
    page.wait_for_selector("#top-models table")
    assert page.text_content('[data-total="cost"] .value') == "$2.50"
    assert page.text_content('[data-total="tokens"] .value') == "1,700"
    assert page.text_content('[data-total="LLM calls"] .value') == "3"
    bars = page.locator("#cost-chart rect.bar")
    assert bars.count() == 90
    today = time.strftime("%Y-%m-%d", time.gmtime())
    old = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 40 * 86_400))
    assert page.get_attribute(f'#cost-chart rect[data-day="{today}"]', "data-value") == "2.5"
    assert page.get_attribute(f'#cost-chart rect[data-day="{old}"]', "data-value") == "3"
    assert page.get_attribute(f'#tokens-chart rect[data-day="{old}"]', "data-value") == "7000"
    assert "USD" in page.text_content("#cost-chart svg") and "day (UTC" in page.text_content(
        "#cost-chart svg"
    )
    customers = [row.split("\t")[:2] for row in page.locator("#top-customers tbody tr").all_inner_texts()]
    assert customers == [["acme", "$2.00"], ["globex", "$0.50"]]
    models = [row.split("\t")[:2] for row in page.locator("#top-models tbody tr").all_inner_texts()]
    assert models == [["gpt-4o", "$2.00"], ["claude", "$0.50"]]
    assert page.text_content('[data-attention="rejected spans"] .value') == "0"
    assert page.url.endswith("/ui/")  # the key never goes into the URL
    shot(page, "overview-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(100)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    shot(page, "overview-phone")


def test_a_filter_narrows_the_records_and_a_record_shows_its_price_reference(
    page: Any, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard, "#records")
    page.wait_for_selector("#records-table table")
    assert page.locator("#records-table tbody tr").count() == 4
    page.fill("#filters input[name=customer]", "globex")
    page.click("#filters button[type=submit]")
    # A locator, not wait_for_function: the page's content-security policy forbids evaluating strings.
    expect(page.locator("#records-table tbody tr")).to_have_count(2)
    customers = {row.split("\t")[3] for row in page.locator("#records-table tbody tr").all_inner_texts()}
    assert customers == {"globex"}
    page.locator("#records-table tbody tr").first.click()
    assert (
        page.text_content("#record-detail .price-ref") == "Price: genai-prices:test:old (computed)"
    )  # newest stored first
    shot(page, "records")
    page.fill("#filters input[name=customer]", "nobody")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#records-table .empty")
    assert page.text_content("#records-table .empty") == "No record matches these filters."


def test_an_exporter_with_dead_deliveries_shows_them(page: Any, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#exporters")
    page.wait_for_selector("#exporters-table table")
    cells = page.locator("#exporters-table tbody tr").first.inner_text().split("\t")
    assert cells[0] == "webhook/billing" and cells[1] == "dead deliveries"
    assert cells[4] == str(dashboard.dead) and dashboard.dead > 0
    assert "HTTP 400" in cells[8] or cells[8] == "—"
    shot(page, "exporters")


def test_a_wrong_key_gets_a_clear_message(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url)
    page.wait_for_selector("#key-panel:not([hidden])")
    assert page.is_hidden("#key-error")
    page.fill("#key-input", "sm_not_a_real_key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-error:not([hidden])")
    assert page.text_content("#key-error") == "The collector refused this key: Invalid API key."
    shot(page, "wrong-key")


def test_the_page_is_public_and_sends_no_data_without_a_key(dashboard: Dashboard) -> None:
    import httpx

    page = httpx.get(dashboard.url)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{dashboard.running.http_url}/ui/app.js").status_code == 200
    assert httpx.get(f"{dashboard.running.http_url}/ui/..%2Fapi%2F__init__.py").status_code == 404
    assert httpx.get(f"{dashboard.running.http_url}/api/v1/exporters").status_code == 401
