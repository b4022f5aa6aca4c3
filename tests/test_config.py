"""Config: the embedded default, env substitution, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from spanmeter.cli import main
from spanmeter.config import Config, load_config, parse_config
from spanmeter.errors import ConfigError
from spanmeter.exporters.registry import exporter_types
from spanmeter.exporters.webhook import WebhookConfig

ROOT = Path(__file__).resolve().parent.parent


def test_default_yaml_is_the_embedded_default() -> None:
    loaded = load_config(ROOT / "collector_config" / "default.yaml", env={})
    # spanmeter.db, relative to the file's directory; the embedded default's to the working directory
    assert loaded.storage.sqlite.path == ROOT / "collector_config" / "spanmeter.db"
    assert loaded.model_copy(update={"storage": Config().storage}) == Config()
    assert load_config(None).storage.sqlite.path == Path.cwd() / "spanmeter.db"
    otlp = Config().otlp.protocols
    assert otlp.grpc is not None and otlp.grpc.endpoint == "127.0.0.1:4317"
    assert otlp.http is not None and otlp.http.endpoint == "127.0.0.1:4318"
    assert str(Config().storage.sqlite.path) == "spanmeter.db"


SPANMETER_CONFIGS = sorted(p for p in (ROOT / "collector_config").glob("*.yaml") if not p.name.startswith("otelcol-"))


EXAMPLE_ENV = {
    "SPANMETER_DB": "/tmp/x.db",
    "SPANMETER_PG_DSN": "postgresql://u@db/usage",
    "SPANMETER_WEBHOOK_SECRET": "whsec_" + "A" * 44,
}


@pytest.mark.parametrize("path", SPANMETER_CONFIGS, ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    load_config(path, env=EXAMPLE_ENV)


def test_webhook_example_shows_the_exporter_defaults() -> None:
    config = load_config(ROOT / "collector_config" / "webhook.yaml", env=EXAMPLE_ENV)
    exporter = config.active_exporters()["webhook/billing"]
    assert exporter.secret == EXAMPLE_ENV["SPANMETER_WEBHOOK_SECRET"]
    assert exporter == WebhookConfig(endpoint=exporter.endpoint, secret=exporter.secret)


EXPORTERS_YAML = ROOT / "collector_config" / "exporters.yaml"


def missing_or_extra_keys(model: type[BaseModel], raw: Any, path: str) -> list[str]:
    """Keys of `model` (recursively) not spelled out in `raw`, and keys of `raw` it does not have."""
    if not isinstance(raw, dict):
        return [f"{path}: expected a mapping"]
    found = [f"{path}::{k}: not a key of the type" for k in raw if k not in model.model_fields]
    for name, field in model.model_fields.items():
        if name not in raw:
            found.append(f"{path}::{name}: missing")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.extend(missing_or_extra_keys(field.annotation, raw[name], f"{path}::{name}"))
    return found


@pytest.mark.parametrize("type_name", list(exporter_types()))
def test_exporters_yaml_shows_every_key_of_every_type_with_its_default(type_name: str) -> None:
    raw = yaml.safe_load(EXPORTERS_YAML.read_text())["exporters"]
    ids = [i for i in raw if i.split("/")[0] == type_name]
    assert ids, f"collector_config/exporters.yaml has no {type_name} exporter: add one with every key and its default"
    model = exporter_types()[type_name].config
    assert missing_or_extra_keys(model, raw[ids[0]], f"exporters::{ids[0]}") == []
    config = load_config(EXPORTERS_YAML, env=EXAMPLE_ENV).exporters[ids[0]]
    required = {name: getattr(config, name) for name, field in model.model_fields.items() if field.is_required()}
    assert config == model(**required)  # every value shown is the default


@pytest.mark.parametrize("type_name", list(exporter_types()))
def test_every_exporter_key_has_a_description(type_name: str) -> None:
    def undescribed(model: type[BaseModel], path: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            if not field.description:
                found.append(f"{path}::{name}")
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found.extend(undescribed(field.annotation, f"{path}::{name}"))
        return found

    assert undescribed(exporter_types()[type_name].config, type_name) == []


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


def test_postgres_storage() -> None:
    raw = {"storage": {"postgres": {"dsn": "${env:SPANMETER_PG_DSN}", "pool_size": 4}}}
    config = parse_config(raw, {"SPANMETER_PG_DSN": "postgresql://u@db/usage"})
    assert config.storage.postgres is not None
    assert (config.storage.postgres.dsn, config.storage.postgres.pool_size) == ("postgresql://u@db/usage", 4)
    assert parse_config({}, {}).storage.postgres is None  # SQLite unless configured
    assert any("storage::postgres::dsn" in p and "SPANMETER_PG_DSN" in p for p in problems(raw))
    assert any("storage::postgres::dsn" in p for p in problems({"storage": {"postgres": {}}}))
    assert any("storage::postgres::pool_size" in p for p in problems({"storage": {"postgres": {"dsn": "x", "pool_size": 0}}}))
