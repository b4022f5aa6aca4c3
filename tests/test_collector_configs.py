"""Every file in collector_config/ is YAML; spanmeter's own pass `spanmeter validate-config`; the
OpenTelemetry Collector ones (otelcol-*.yaml) are wired consistently and send to spanmeter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from spanmeter.cli import main
from spanmeter.usage_schema import EVENT_NAME, METER

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "collector_config").glob("*.yaml"))
OTELCOL = [p for p in CONFIGS if p.name.startswith("otelcol-")]
SPANMETER = [p for p in CONFIGS if not p.name.startswith("otelcol-")]
ENV = {
    "SPANMETER_DB": "/tmp/x.db",
    "SPANMETER_PG_DSN": "postgresql://u:secret@db/usage",
    "SPANMETER_WEBHOOK_SECRET": "whsec_" + "A" * 44,
}


def test_there_are_both_kinds() -> None:
    assert {p.name for p in OTELCOL} >= {"otelcol-forward.yaml", "otelcol-filter-genai.yaml",
                                         "otelcol-loadbalancing.yaml"}
    assert SPANMETER


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_parses_as_yaml(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict)


@pytest.mark.parametrize("path", SPANMETER, ids=lambda p: p.name)
def test_spanmeter_config_validates(path: Path) -> None:
    result = CliRunner(env=ENV).invoke(main, ["validate-config", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.output


@pytest.mark.parametrize("path", OTELCOL, ids=lambda p: p.name)
def test_otelcol_pipelines_reference_defined_components(path: Path) -> None:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    for name, pipeline in config["service"]["pipelines"].items():
        assert name.split("/")[0] == "traces", name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{path.name}: {name} uses undefined {kind[:-1]} {component}"
    exporters = config["exporters"]
    assert any("spanmeter" in name for name in exporters), "no exporter sends to spanmeter"


def test_filter_keeps_what_spanmeter_counts() -> None:
    config = yaml.safe_load((OTELCOL[0].parent / "otelcol-filter-genai.yaml").read_text())
    conditions = config["processors"]["filter/usage-only"]["traces"]["span"]
    assert len(conditions) == 1  # ORed when several: one AND-ed "no marker at all" condition
    for marker in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "llm.request.type",
                   "openinference.span.kind", EVENT_NAME, METER):
        assert f'attributes["{marker}"] == nil' in conditions[0]
    assert " or " not in conditions[0]
    assert "filter/usage-only" in config["service"]["pipelines"]["traces/usage"]["processors"]
    assert "filter/usage-only" not in config["service"]["pipelines"]["traces/all"].get("processors", [])


def test_loadbalancing_routes_by_trace_id() -> None:
    config = yaml.safe_load((OTELCOL[0].parent / "otelcol-loadbalancing.yaml").read_text())
    exporter = config["exporters"]["loadbalancing/spanmeter"]
    assert exporter["routing_key"] == "traceID"
    assert all(h.endswith(":4317") for h in exporter["resolver"]["static"]["hostnames"])
