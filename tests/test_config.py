"""Config: the embedded default, env substitution, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spanmeter.cli import main
from spanmeter.config import Config, load_config, parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters.webhook import WebhookConfig

ROOT = Path(__file__).resolve().parent.parent


def test_default_yaml_is_the_embedded_default() -> None:
    assert load_config(ROOT / "collector_config" / "default.yaml", env={}) == Config()
    otlp = Config().otlp.protocols
    assert otlp.grpc is not None and otlp.grpc.endpoint == "127.0.0.1:4317"
    assert otlp.http is not None and otlp.http.endpoint == "127.0.0.1:4318"
    assert str(Config().storage.sqlite.path) == "spanmeter.db"


SPANMETER_CONFIGS = sorted(p for p in (ROOT / "collector_config").glob("*.yaml") if not p.name.startswith("otelcol-"))


EXAMPLE_ENV = {"SPANMETER_DB": "/tmp/x.db", "SPANMETER_WEBHOOK_SECRET": "whsec_" + "A" * 44}


@pytest.mark.parametrize("path", SPANMETER_CONFIGS, ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    load_config(path, env=EXAMPLE_ENV)


def test_webhook_example_shows_the_exporter_defaults() -> None:
    config = load_config(ROOT / "collector_config" / "webhook.yaml", env=EXAMPLE_ENV)
    exporter = config.active_exporters()["webhook/billing"]
    assert exporter.secret == EXAMPLE_ENV["SPANMETER_WEBHOOK_SECRET"]
    assert exporter == WebhookConfig(endpoint=exporter.endpoint, secret=exporter.secret)


def test_env_substitution() -> None:
    raw = {"storage": {"sqlite": {"path": "${env:DB_PATH}"}}, "service": {"workspace": "${env:WS:-fallback}"}}
    config = parse_config(raw, {"DB_PATH": "/data/usage.db"})
    assert str(config.storage.sqlite.path) == "/data/usage.db"
    assert config.service.workspace == "fallback"


def problems(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(raw, env or {})
    return error.value.problems


def test_errors_name_the_key_path_and_the_fix() -> None:
    found = problems({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "4317"}}, "max_request_bytes": -1, "colour": 1}},
        "storage": {"sqlite": {"path": "${env:MISSING}"}},
    })
    assert found == ["storage::sqlite::path: environment variable MISSING is not set (or use ${env:MISSING:-default})"]
    found = problems({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "4317"}}, "max_request_bytes": -1, "colour": 1}},
    })
    assert "receivers::otlp::protocols::grpc::endpoint: expected host:port such as 127.0.0.1:4317, got '4317'" in found
    assert any(p.startswith("receivers::otlp::max_request_bytes: Input should be greater than 0") for p in found)
    assert "receivers::otlp::colour: unknown key; check its spelling against collector_config/default.yaml" in found


def test_pipeline_references_are_checked() -> None:
    found = problems({"service": {"pipelines": {"usage": {"receivers": ["otlp/2"], "exporters": ["webhook"]}}}})
    assert "service::pipelines::usage::receivers: references receiver 'otlp/2' which is not configured" in found
    assert "service::pipelines::usage::exporters: references exporter 'webhook' which is not configured" in found


def test_validate_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("storage:\n  sqlite:\n    path: /tmp/usage.db\n")
    result = CliRunner().invoke(main, ["validate-config", "-c", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "/tmp/usage.db" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  sqlite:\n    synchronous: sometimes\n")
    result = CliRunner().invoke(main, ["validate-config", "-c", str(bad)])
    assert result.exit_code == 1
    assert "storage::sqlite::synchronous" in result.output and "'normal' or 'full'" in result.output

    broken = tmp_path / "broken.yaml"
    broken.write_text("storage: [unclosed\n")
    result = CliRunner().invoke(main, ["validate-config", "-c", str(broken)])
    assert result.exit_code == 1 and "not valid YAML" in result.output

    result = CliRunner().invoke(main, ["validate-config", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
