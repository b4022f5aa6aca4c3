"""`spanmeter usage`: the CLI twin of GET /api/v1/usage/aggregate, as a table and as the API's JSON."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import yaml
from click.testing import CliRunner

from spanmeter.cli import main
from tests.api.conftest import DAY_NS, record
from tests.conftest import make_config, running_collector

ROOT = Path(__file__).resolve().parent.parent


def test_usage_by_customer_per_day_as_table_and_json(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "spanmeter.db")}}}))
    today = time.time_ns() // DAY_NS * DAY_NS
    priced = {"cost_source": "computed"}
    with running_collector(make_config(tmp_path)) as running:
        result = running.call(running.collector.store.write([
            record("a1", customer_id="acme", occurred_at=today + 1, cost_usd=Decimal("0.25"), **priced),
            record("a2", customer_id="acme", occurred_at=today + 2, cost_usd=Decimal("0.5"), **priced),
            record("g1", customer_id="globex", occurred_at=today - 2 * DAY_NS, cost_usd=Decimal(1), **priced),
            record("old", customer_id="acme", occurred_at=today - 40 * DAY_NS, cost_usd=Decimal(9), **priced),
        ]))  # fmt: skip
        assert len(result.inserted) == 4

    runner = CliRunner()
    args = ["usage", "-c", str(config_path), "--group-by", "customer", "--window", "day", "--since", "30d"]
    table = runner.invoke(main, args)
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.output.splitlines()]
    assert lines[0] == ["window", "customer", "cost", "total_tokens", "records"]
    day = lambda ns: time.strftime("%Y-%m-%d", time.gmtime(ns // 10**9))
    assert lines[1:] == [
        [day(today - 2 * DAY_NS), "globex", "1", "120", "1"],
        [day(today), "acme", "0.75", "240", "2"],
    ]

    body = json.loads(runner.invoke(main, [*args, "--json", "--metric", "cost"]).output)
    assert body["source"] == "rollup"  # "30d" starts at a UTC midnight: whole days
    assert [(r["group"]["customer"], r["values"]["cost"]) for r in body["rows"]] == [
        ("globex", "1"),
        ("acme", "0.75"),
    ]

    new_york = json.loads(runner.invoke(main, [*args, "--json", "--tz", "America/New_York"]).output)
    assert new_york["source"] == "records" and new_york["tz"] == "America/New_York"

    bad = runner.invoke(main, [*args, "--metric", "dollars"])
    assert bad.exit_code == 2 and "unknown metric 'dollars'" in bad.output
    bad_tz = runner.invoke(main, [*args, "--tz", "Mars/Olympus"])
    assert bad_tz.exit_code == 2 and "unknown time zone" in bad_tz.output
    bad_until = runner.invoke(main, [*args, "--until", "yesterday"])
    assert bad_until.exit_code == 2 and "--until" in bad_until.output and "--since" not in bad_until.output.split("Error")[-1]
    assert "spanmeter usage" in (ROOT / "README.md").read_text()
