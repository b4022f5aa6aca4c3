"""Models the price data does not know: `spanmeter models unknown` lists them with their records,
and the opt-in price refresh (genai-prices' own updater, here fetching from a local server) prices
new models without upgrading spanmeter, naming the fetched data's version in `price_ref`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from genai_prices import data_snapshot
from genai_prices.update_prices import DEFAULT_UPDATE_URL, wait_prices_updated_sync

from spanmeter.app import Collector
from spanmeter.cli import main
from spanmeter.config import Config
from spanmeter.pricing import PRICE_DATA_VERSION, Pricer, PriceRefresh
from spanmeter.record import UsageRecord
from tests.conftest import make_config, running_collector
from tests.otlp_helpers import i, json_request, llm_raw_attrs, raw_span, s

# genai-prices' data format (v2 data.json): one provider with one model unknown to the bundled data.
NEW_DATA = [{"id": "acme", "name": "Acme AI", "api_pattern": "https://api\\.acme\\.test",
             "model_match": {"contains": "acme"},
             "models": [{"id": "acme-large-2", "match": {"equals": "acme-large-2"},
                         "prices": {"input_mtok": 1.25, "output_mtok": 10}}]}]


class _DataServer(ThreadingHTTPServer):
    daemon_threads = True
    body: bytes = b""
    status: int = 200


class _Handler(BaseHTTPRequestHandler):
    server: _DataServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


@pytest.fixture
def data_server() -> Iterator[_DataServer]:
    server = _DataServer(("127.0.0.1", 0), _Handler)
    server.body = json.dumps(NEW_DATA).encode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        data_snapshot.set_custom_snapshot(None)  # back to the bundled data for the other tests


def url_of(server: _DataServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/data.json"


def unknown_call(span_id: int, model: str = "acme-large-2", **extra: Any) -> dict[str, Any]:
    return raw_span(span_id, llm_raw_attrs(**{"gen_ai.provider.name": s("acme"), "gen_ai.request.model": s(model),
                                              **extra}))


def test_models_unknown_lists_unpriced_models_with_their_records(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
    with running_collector(make_config(tmp_path)) as collector:
        body = json_request([
            unknown_call(1), unknown_call(2, **{"gen_ai.usage.input_tokens": i(7)}),
            unknown_call(3, model="acme-small"),
            raw_span(4, llm_raw_attrs()),  # priced: not listed
            raw_span(5, {"gen_ai.operation.name": s("chat"), "gen_ai.provider.name": s("acme"),
                         "gen_ai.request.model": s("acme-failed")}),  # no tokens: nothing to price, not listed
        ])
        assert httpx.post(f"{collector.http_url}/v1/traces", content=body,
                          headers={"content-type": "application/json"}).status_code == 200

    runner = CliRunner()
    table = runner.invoke(main, ["models", "unknown", "-c", str(config_path)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["provider", "model", "records", "input_tokens", "output_tokens", "first_seen",
                                "last_seen"]
    assert [line.split()[:5] for line in lines[1:]] == [["acme", "acme-large-2", "2", "107", "40"],
                                                       ["acme", "acme-small", "1", "100", "20"]]
    rows = json.loads(runner.invoke(main, ["models", "unknown", "-c", str(config_path), "--json"]).output)
    assert [(r["model"], r["records"]) for r in rows] == [("acme-large-2", "2"), ("acme-small", "1")]
    assert rows[0]["first_seen"].endswith("Z")
    none = runner.invoke(main, ["models", "unknown", "-c", str(config_path), "--since", "2999-01-01T00:00Z"])
    assert none.exit_code == 0 and none.output.startswith("no unknown models")


def test_refresh_is_off_by_default() -> None:
    assert Config().processors.pricing.refresh.enabled is False


def test_refresh_without_a_url_fetches_genai_prices_own_data(tmp_path: Path) -> None:
    collector = Collector(make_config(tmp_path, processors={"pricing": {"refresh": {"enabled": True}}}))
    assert collector.price_refresh is not None and collector.price_refresh.url == DEFAULT_UPDATE_URL


def test_refreshed_price_data_prices_a_new_model_and_names_its_version(tmp_path: Path,
                                                                     data_server: _DataServer) -> None:
    config = make_config(tmp_path, processors={"pricing": {"refresh": {"enabled": True, "url": url_of(data_server)}}})
    with running_collector(config) as collector:
        assert wait_prices_updated_sync(timeout=10)
        body = json_request([unknown_call(1)])
        assert httpx.post(f"{collector.http_url}/v1/traces", content=body,
                          headers={"content-type": "application/json"}).status_code == 200
        [record] = collector.records(kind="llm")
    assert record.cost_source == "computed"
    assert record.cost_usd == Decimal(100) * Decimal("1.25") / 10**6 + Decimal(20) * 10 / 10**6
    assert record.price_ref is not None and record.price_ref.startswith("genai-prices data sha256:")
    assert record.price_ref.endswith(" acme/acme-large-2") and " fetched " in record.price_ref


def test_a_failed_fetch_keeps_the_data_in_use(data_server: _DataServer) -> None:
    data_server.status = 500
    refresh = PriceRefresh(update_interval=3600, url=url_of(data_server))
    refresh.start()
    try:
        with pytest.raises(httpx.HTTPStatusError):
            refresh.wait(timeout=10)
    finally:
        refresh.stop()
    record = UsageRecord("k", "llm", "chat", 1_763_900_000_000_000_000, provider="openai",
                         request_model="gpt-4o-mini", input_tokens=100, output_tokens=20)
    Pricer().price(record)
    assert record.cost_source == "computed" and record.price_ref is not None
    assert record.price_ref.startswith(PRICE_DATA_VERSION + " ")  # the bundled data, still
