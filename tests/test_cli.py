"""The `spanmeter` command: help on every command, `records` as a table and as JSON, filters."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from spanmeter.cli import main
from tests.conftest import make_config, running_collector
from tests.otlp_helpers import T0, json_request, llm_raw_attrs, raw_span, s

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [[], ["serve"], ["validate-config"], ["records"], ["keys"], ["models"], ["export", "csv"]])
def test_every_command_has_help_and_is_in_the_readme(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output and len(result.output.splitlines()) > 5
    if command:
        assert f"spanmeter {command[0]}" in (ROOT / "README.md").read_text()


def test_records_table_json_and_filters(tmp_path: Path) -> None:
    import httpx

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
    with running_collector(make_config(tmp_path)) as collector:
        body = json_request([
            raw_span(1, llm_raw_attrs(**{"usage.customer.id": s("acme")})),
            raw_span(2, llm_raw_attrs(**{"usage.customer.id": s("globex")})),
            raw_span(3, {"usage.event.name": s("SIGNUP"), "usage.customer.id": s("acme")}),
        ])
        assert httpx.post(f"{collector.http_url}/v1/traces", content=body,
                          headers={"content-type": "application/json"}).status_code == 200

    runner = CliRunner()
    table = runner.invoke(main, ["records", "-c", str(config_path)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["occurred_at", "kind", "type"]
    assert len(lines) == 4 and "SIGNUP" in lines[1]

    as_json = json.loads(runner.invoke(main, ["records", "-c", str(config_path), "--json"]).output)
    assert len(as_json) == 3
    llm = next(r for r in as_json if r["kind"] == "llm")
    assert llm["input_tokens"] == 100 and llm["cost_usd"] and llm["occurred_at"].endswith("Z")
    assert {"idempotency_key", "workspace", "trace_id", "span_id", "meta", "tags"} <= set(llm)

    acme = json.loads(runner.invoke(main, ["records", "-c", str(config_path), "--json", "--customer", "acme"]).output)
    assert {r["customer_id"] for r in acme} == {"acme"} and len(acme) == 2
    events = json.loads(runner.invoke(main, ["records", "-c", str(config_path), "--json", "--kind", "event"]).output)
    assert [r["type"] for r in events] == ["SIGNUP"]
    one = json.loads(runner.invoke(main, ["records", "-c", str(config_path), "--json", "--limit", "1"]).output)
    assert len(one) == 1
    future = runner.invoke(main, ["records", "-c", str(config_path), "--since", "2999-01-01T00:00Z"])
    assert future.output.strip() == "no records in workspace 'default' matching --customer/--kind/--since"
    recent = json.loads(runner.invoke(main, ["records", "-c", str(config_path), "--json", "--since", "3650d"]).output)
    assert len(recent) == 3
    bad = runner.invoke(main, ["records", "-c", str(config_path), "--since", "last tuesday"])
    assert bad.exit_code == 2 and "30m, 2h, 7d" in bad.output


@pytest.mark.parametrize(
    "command",
    [["records"], ["keys", "list"], ["keys", "revoke", "key_x"], ["exporters", "status"], ["deliveries", "list"],
     ["deliveries", "retry", "--all"], ["models", "unknown"]],
)
def test_a_command_without_database_says_what_to_do_and_creates_none(tmp_path: Path, command: list[str]) -> None:
    # A mistyped path must not leave an empty database behind that a later `serve -c` would not use.
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "none.db")}}}))
    result = CliRunner().invoke(main, [*command, "-c", str(config_path)])
    assert result.exit_code == 1 and "run `spanmeter serve` first" in result.output
    assert f"no database at {tmp_path / 'none.db'} (storage::sqlite::path of {config_path})" in result.output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    "command",
    [["records"], ["keys", "list"], ["keys", "create"], ["exporters", "status"], ["usage", "--metric", "cost"],
     ["export", "csv", "--kind", "accounts"]],
)
def test_a_command_on_an_unreachable_postgresql_says_which_database_and_why(
    tmp_path: Path, command: list[str]
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        dsn = f"postgresql://spanmeter:s3cret@127.0.0.1:{port}/usage"
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump({"storage": {"postgres": {"dsn": dsn, "connect_timeout": 1}}}))
        result = CliRunner().invoke(main, [*command, "-c", str(config_path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert f"Error: cannot open the database postgresql://spanmeter:***@127.0.0.1:{port}/usage" in result.output
    assert "Connection refused" in result.output and "(storage::postgres::dsn in the config)" in result.output
    assert "s3cret" not in result.output


def test_keys_create_makes_the_database_before_the_first_serve(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "new.db")}}}))
    created = CliRunner().invoke(main, ["keys", "create", "-c", str(config_path)])
    assert created.exit_code == 0 and created.output.startswith("sm_")
    assert CliRunner().invoke(main, ["keys", "list", "-c", str(config_path)]).exit_code == 0


def _post(collector: Any, spans: list[dict[str, Any]]) -> None:
    import httpx

    response = httpx.post(f"{collector.http_url}/v1/traces", content=json_request(spans),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200 and "rejected" not in response.text, response.text


def test_records_newest_first_by_occurred_at_with_quantity_model_and_unknown_cost(tmp_path: Path) -> None:
    with running_collector(make_config(tmp_path)) as collector:
        # sent in this order; occurred 17:13:20, 17:15:36, 17:14:00
        _post(collector, [raw_span(1, llm_raw_attrs(), startTimeUnixNano=str(T0))])
        _post(collector, [raw_span(2, llm_raw_attrs(**{"gen_ai.request.model": s("my-own-model-7b")}),
                                   startTimeUnixNano=str(T0 + 136 * 10**9))])
        _post(collector, [raw_span(3, {"usage.meter": s("pages"), "usage.quantity": s("2.50")},
                                   startTimeUnixNano=str(T0 + 40 * 10**9))])
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": "spanmeter.db"}}}))  # relative: next to it
    table = CliRunner().invoke(main, ["records", "-c", str(config_path)])
    assert table.exit_code == 0, table.output
    header, *rows = [line.split() for line in table.output.splitlines()]
    assert header == ["occurred_at", "kind", "type", "customer_id", "provider", "request_model", "response_model",
                      "input_tokens", "output_tokens", "quantity", "cost_usd", "status"]
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)  # newest first
    unknown, meter, known = (dict(zip(header, row, strict=True)) for row in rows)
    assert (unknown["request_model"], unknown["cost_usd"]) == ("my-own-model-7b", "unknown")
    assert (meter["kind"], meter["type"], meter["quantity"], meter["cost_usd"]) == ("meter", "pages", "2.5", "-")
    assert known["request_model"] == "gpt-4o-mini" and known["cost_usd"] not in ("-", "unknown")


def test_records_reads_the_workspace_asked_for_and_says_which_it_read(tmp_path: Path) -> None:
    with running_collector(make_config(tmp_path, service={"workspace": "acme"})) as collector:
        _post(collector, [raw_span(n, llm_raw_attrs()) for n in (1, 2, 3)])
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
    empty = CliRunner().invoke(main, ["records", "-c", str(config_path)])
    assert empty.exit_code == 0
    assert empty.output.strip() == (
        "no records in workspace 'default'; workspaces with records: acme (choose one with --workspace)"
    )
    found = CliRunner().invoke(main, ["records", "-c", str(config_path), "--workspace", "acme", "--json"])
    assert [r["workspace"] for r in json.loads(found.output)] == ["acme"] * 3


def test_a_relative_database_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config_path = tmp_path / "conf" / "spanmeter.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": "usage.db"}}}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    missing = CliRunner().invoke(main, ["records", "-c", "../conf/spanmeter.yaml"])
    assert f"no database at {tmp_path / 'conf' / 'usage.db'} (" in missing.output  # absolute, next to the file
    assert CliRunner().invoke(main, ["keys", "create", "-c", "../conf/spanmeter.yaml"]).exit_code == 0
    assert (tmp_path / "conf" / "usage.db").exists() and not (tmp_path / "elsewhere" / "usage.db").exists()
    assert CliRunner().invoke(main, ["records", "-c", str(config_path)]).exit_code == 0
    # no -c: the embedded default's spanmeter.db in the working directory, named in full
    default = CliRunner().invoke(main, ["records"])
    assert f"no database at {tmp_path / 'elsewhere' / 'spanmeter.db'} (the default, without -c)" in default.output


def test_admin_commands_do_not_need_the_exporters_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANMETER_TEST_UNSET_SECRET", raising=False)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "exporters": {"webhook/billing": {"endpoint": "https://billing.example.com/hooks",
                                          "secret": "${env:SPANMETER_TEST_UNSET_SECRET}",
                                          "headers": {"authorization": "${env:SPANMETER_TEST_UNSET_SECRET}"}}},
        "service": {"pipelines": {"usage": {"exporters": ["webhook/billing"]}}},
        "storage": {"sqlite": {"path": "spanmeter.db"}},
    }))
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "create", "-c", str(config_path)]).exit_code == 0
    for command in (["exporters", "status"], ["deliveries", "list"], ["records"], ["keys", "list"]):
        result = runner.invoke(main, [*command, "-c", str(config_path)])
        assert result.exit_code == 0 and "SPANMETER_TEST_UNSET_SECRET" not in result.output, (command, result.output)
    retry = runner.invoke(main, ["deliveries", "retry", "--all", "-c", str(config_path)])
    assert retry.exit_code == 1 and "no dead delivery matched" in retry.output
    # what sends still needs it, and says so
    checked = runner.invoke(main, ["validate-config", "-c", str(config_path)])
    assert checked.exit_code == 1 and "exporters::webhook/billing::secret: environment variable" in checked.output


def test_deliveries_retry_without_arguments_says_what_to_give(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["deliveries", "retry"])
    assert result.exit_code == 2
    assert "their record ids (the record_id column of `spanmeter deliveries list`), or --all" in result.output


def test_serve_logging_keeps_library_request_lines_out() -> None:
    import logging

    from spanmeter.cli import setup_logging

    setup_logging("info", "text")
    for name in ("httpx", "httpcore", "uvicorn.error"):  # httpx logged an INFO line per exporter POST
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    assert logging.getLogger("spanmeter.exporters.runner").isEnabledFor(logging.INFO)


def test_keys_quota_create_update_and_remove(tmp_path: Path, storage: dict[str, Any]) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": storage}))
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "-c", str(config_path), "--quota", "1000", "--quota", "$2.50"])
    assert created.exit_code == 0, created.output

    def listed() -> dict[str, str]:
        [key] = json.loads(runner.invoke(main, ["keys", "list", "-c", str(config_path), "--json"]).output)
        return key  # type: ignore[no-any-return]

    key = listed()
    assert key["quota"] == "1000 records/month, $2.5/month"
    updated = runner.invoke(main, ["keys", "update", key["id"], "-c", str(config_path), "--quota", "25usd"])
    assert updated.exit_code == 0 and updated.output.strip() == f"{key['id']}: quota $25/month"
    assert listed()["quota"] == "$25/month"
    assert runner.invoke(main, ["keys", "update", key["id"], "-c", str(config_path), "--no-quota"]).exit_code == 0
    assert listed()["quota"] == "none"

    bad = runner.invoke(main, ["keys", "update", key["id"], "-c", str(config_path), "--quota", "lots"])
    assert bad.exit_code == 2 and "a record count per month (e.g. 10000) or a cost per month in USD" in bad.output
    twice = runner.invoke(main, ["keys", "create", "-c", str(config_path), "--quota", "1", "--quota", "2"])
    assert twice.exit_code == 2 and "at most one quota of each kind" in twice.output
    neither = runner.invoke(main, ["keys", "update", key["id"], "-c", str(config_path)])
    assert neither.exit_code == 2 and "--no-quota" in neither.output
    unknown = runner.invoke(main, ["keys", "update", "key_x", "-c", str(config_path), "--no-quota"])
    assert unknown.exit_code == 1 and "no key with id 'key_x'" in unknown.output
