"""The `spanmeter` command: help on every command, `records` as a table and as JSON, filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from spanmeter.cli import main
from tests.conftest import make_config, running_collector
from tests.otlp_helpers import json_request, llm_raw_attrs, raw_span, s

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [[], ["serve"], ["validate-config"], ["records"], ["keys"], ["models"]])
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
    assert future.output.strip() == "no records"
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
    assert result.exit_code == 1 and "no database at" in result.output and "run `spanmeter serve` first" in result.output
    assert not (tmp_path / "none.db").exists()


def test_keys_create_makes_the_database_before_the_first_serve(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "new.db")}}}))
    created = CliRunner().invoke(main, ["keys", "create", "-c", str(config_path)])
    assert created.exit_code == 0 and created.output.startswith("sm_")
    assert CliRunner().invoke(main, ["keys", "list", "-c", str(config_path)]).exit_code == 0
