"""Configuration: one YAML file shaped like an OpenTelemetry Collector config.

    receivers:   how spans arrive (OTLP gRPC and HTTP)
    processors:  usage (which spans count, limits) and pricing (overrides, bundled prices)
    exporters:   where records go after they are stored, from the outbox: `type/name` keys, each
                 validated by its type's model (exporters/registry.py; every type and key with its
                 default in collector_config/exporters.yaml)
    storage:     where records are stored (SQLite)
    service:     the workspace, the pipeline wiring, the collector's own logs

`${env:NAME}` (or `${env:NAME:-default}`) in any string value is replaced by the environment
variable. Every problem is reported with its key path (`receivers::otlp::...`) at once, before
anything starts. With no file, the defaults below apply; collector_config/default.yaml spells them out.

A relative `storage::sqlite::path` is relative to the config file's directory (as the OpenTelemetry
Collector resolves file paths), or to the working directory when there is no file: the CLI finds
the same database from wherever it is run.
"""

from __future__ import annotations

import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from spanmeter.convert.attributes import DEFAULT_EXCLUSIVE_INPUT_SCOPES, MODEL_OPERATIONS
from spanmeter.errors import ConfigError
from spanmeter.event_loop import EventLoopChoice, uses_uvloop
from spanmeter.exporters import registry
from spanmeter.exporters.settings import ExporterConfig

_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Model):
    endpoint: str = Field(description="host:port to listen on; port 0 picks a free port")

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:4317, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.endpoint.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class Protocols(_Model):
    grpc: Endpoint | None = Endpoint(endpoint="127.0.0.1:4317")
    http: Endpoint | None = Endpoint(endpoint="127.0.0.1:4318")


class OTLPReceiver(_Model):
    protocols: Protocols = Protocols()
    max_request_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="largest request body accepted, after decompression"
    )
    max_in_flight_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="request bodies being converted and stored at once, in bytes; past it 503 / UNAVAILABLE (retry)",
    )
    max_connections: int = Field(
        1000, gt=0, description="open connections per protocol (gRPC, HTTP) at most; more are closed at once"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="seconds for a request's head to arrive (HTTP) or a connection's handshake (gRPC)"
    )
    body_timeout: float = Field(60.0, gt=0, description="seconds for a whole HTTP request to arrive")
    idle_timeout: float = Field(
        65.0, gt=0, description="seconds an idle connection is kept open (longer than the SDKs' 5 s export interval)"
    )


class UsageProcessor(_Model):
    count_operations: list[str] = Field(
        sorted(MODEL_OPERATIONS),
        description="gen_ai.operation.name / llm.request.type values counted as one model call each",
    )
    max_field_chars: int = Field(4096, gt=0, description="longest id, name, meta key or meta value accepted")
    max_meta_keys: int = Field(64, gt=0, description="most usage.meta.* attributes on one record; more → span rejected")
    content_capture: bool = Field(False, description="store the prompt text of LLM calls in `query`")
    content_max_chars: int = Field(2000, gt=0, description="longest prompt text kept when content capture is on")
    exclusive_input_scopes: list[str] = Field(
        list(DEFAULT_EXCLUSIVE_INPUT_SCOPES),
        description="instrumentation scope names whose input tokens exclude cache reads/writes (normalised); "
        "the default lists the known ones (botocore's Bedrock instrumentation): keep them when adding more",
    )
    provider_traced: dict[str, list[str]] = Field(
        default_factory=dict,
        description="framework instrumentation scope -> providers (e.g. "
        "{openinference.instrumentation.langchain: [openai]}): that scope's model-call spans of those "
        "providers are not counted, because the provider's own instrumentation traces the same calls in "
        "every app sending here; only set it when that is true, or those calls go uncounted",
    )


class PriceOverrideConfig(_Model):
    model: str = Field(description="fnmatch pattern of the model name, e.g. 'ft:gpt-4o*'")
    provider: str | None = None
    customer: str | None = Field(None, description="apply to this customer only (a customer's negotiated prices)")
    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(None, ge=0)
    cache_write_mtok: Decimal | None = Field(None, ge=0)


class PriceRefreshConfig(_Model):
    """Opt-in: fetch genai-prices' newest price data in the background (network access)."""

    enabled: bool = False
    interval: float = Field(3600, ge=60, description="seconds between fetches")
    # None: genai-prices' own update URL (read when the refresh starts: importing genai-prices here
    # would cost every CLI command most of a second).
    url: str | None = Field(None, min_length=1, description="genai-prices' data.json (v2 format)")


class PricingProcessor(_Model):
    use_bundled_prices: bool = True
    refresh: PriceRefreshConfig = PriceRefreshConfig()
    reported_cost_wins: bool = False
    reported_cost_tolerance: Decimal = Field(
        Decimal("0.05"), ge=0, description="relative difference from the computed cost counted as a mismatch"
    )
    overrides: list[PriceOverrideConfig] = []


class Processors(_Model):
    usage: UsageProcessor = UsageProcessor()
    pricing: PricingProcessor = PricingProcessor()


class SQLiteStorage(_Model):
    path: Path = Path("spanmeter.db")
    synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal survives a process crash; full also survives power loss"
    )
    max_queued_records: int = Field(200_000, gt=0, description="above this, ingest answers 503 / UNAVAILABLE")
    busy_timeout: float = Field(5.0, gt=0, description="seconds a write waits for a lock held by another process")
    cache_mb: int = Field(32, ge=1, description="SQLite page cache of the writer; keeps the key index in memory")


class PostgresStorage(_Model):
    """Several instances on one database (the `postgres` extra: pip install 'spanmeter[postgres]')."""

    dsn: str = Field(min_length=1, description="libpq connection string or URI, e.g. ${env:SPANMETER_PG_DSN}")
    pool_size: int = Field(8, gt=0, description="connections for the query API, keys and exporters (plus one writer)")
    max_queued_records: int = Field(200_000, gt=0, description="above this, ingest answers 503 / UNAVAILABLE")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for a connection before a write fails")


class Storage(_Model):
    sqlite: SQLiteStorage = SQLiteStorage()
    postgres: PostgresStorage | None = Field(None, description="when set, records go to PostgreSQL, not SQLite")

    @property
    def where_key(self) -> str:
        """The config key that says where the database is (for messages about it)."""
        return "storage::postgres::dsn" if self.postgres else "storage::sqlite::path"


class Pipeline(_Model):
    receivers: list[str] = ["otlp"]
    processors: list[str] = ["usage", "pricing"]
    exporters: list[str] = []


class Logs(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Telemetry(_Model):
    logs: Logs = Logs()


class Service(_Model):
    workspace: Annotated[str, Field(min_length=1)] = "default"
    event_loop: EventLoopChoice = Field(
        "auto", description="auto: uvloop when installed (not on Windows), else asyncio; or asyncio | uvloop"
    )
    pipelines: dict[str, Pipeline] = {"usage": Pipeline()}
    telemetry: Telemetry = Telemetry()

    @field_validator("event_loop")
    @classmethod
    def _event_loop_available(cls, choice: EventLoopChoice) -> EventLoopChoice:
        uses_uvloop(choice)  # 'uvloop' without uvloop installed is an error here, not at start-up
        return choice


class Auth(_Model):
    enabled: bool = Field(False, description="require an API key (`spanmeter keys create`) on ingest and queries")
    allow_unauthenticated: bool = Field(
        False, description="allow auth off on a non-loopback address (anyone who can reach it can write and read)"
    )


class RateLimit(_Model):
    requests: int = Field(60, gt=0, description="calls per client per window")
    window_seconds: float = Field(60.0, gt=0)


class Adoption(_Model):
    min_developers: int = Field(5, ge=1, description="k: rows with fewer distinct developers are suppressed")
    public_workspace: str | None = Field(
        None, description="workspace that callers without a key see (default: service::workspace)"
    )
    rate_limit: RateLimit = RateLimit()


class Api(_Model):
    adoption: Adoption = Adoption()


class Config(_Model):
    receivers: dict[str, OTLPReceiver] = {"otlp": OTLPReceiver()}
    processors: Processors = Processors()
    exporters: dict[str, SerializeAsAny[ExporterConfig]] = Field(
        {}, description="`type/name` -> that type's config (an instance of its model, see parse_config)"
    )
    storage: Storage = Storage()
    service: Service = Service()
    auth: Auth = Auth()
    api: Api = Api()

    @property
    def otlp(self) -> OTLPReceiver:
        return next(iter(self.receivers.values()))

    def active_exporters(self) -> dict[str, ExporterConfig]:
        """The exporters some pipeline uses (as in the OTel Collector, others are not started)."""
        used = {e for pipeline in self.service.pipelines.values() for e in pipeline.exporters}
        return {name: exporter for name, exporter in self.exporters.items() if name in used}


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None, *, sending: bool = True) -> Config:
    """The validated config of `path` (the defaults when None), its storage path made absolute;
    raises ConfigError. `sending=False` is for commands that only read the store: exporters'
    `secret` and `headers` (often `${env:...}` set only where `serve` runs) are left out."""
    if path is None:
        return _absolute_paths(Config(), Path.cwd())
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{source}: cannot read the config file: {error.strerror or error}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: not valid YAML: {error}"]) from None
    config = parse_config({} if raw is None else raw, os.environ if env is None else env, sending=sending)
    return _absolute_paths(config, source.resolve().parent)


def _absolute_paths(config: Config, base: Path) -> Config:
    sqlite = config.storage.sqlite
    path = base / sqlite.path.expanduser()  # an absolute path stays itself
    storage = config.storage.model_copy(update={"sqlite": sqlite.model_copy(update={"path": path})})
    return config.model_copy(update={"storage": storage})


# Exporter keys only the sending process needs; every exporter type names its credential `api_key`
# (or `secret` for signing), so a read-only command runs without the env vars that hold them.
_SENDING_ONLY: Final = ("secret", "headers", "api_key")
# What a required `api_key` is read as by those commands: never sent, never shown.
_KEY_NOT_READ: Final = "(not read by this command)"


def parse_config(raw: Any, env: dict[str, str] | os._Environ[str], *, sending: bool = True) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(["the config file must be a mapping with receivers, processors, storage, service"])
    if not sending and isinstance(raw.get("exporters"), dict):
        raw = {**raw, "exporters": {
            name: {
                **{k: v for k, v in value.items() if k not in _SENDING_ONLY},
                **({"api_key": _KEY_NOT_READ} if "api_key" in value else {}),
            } if isinstance(value, dict) else value
            for name, value in raw["exporters"].items()
        }}
    problems: list[str] = []
    raw = _substitute(raw, env, (), problems)
    if problems:
        raise ConfigError(problems)
    exporters, problems = _exporters(raw.pop("exporters", None))
    try:
        config = Config.model_validate({**raw, "exporters": exporters})
    except ValidationError as error:
        problems.extend(_describe(e) for e in error.errors())
    if problems:
        raise ConfigError(problems)
    problems.extend(_check_references(config))
    problems.extend(_check_auth(config))
    if problems:
        raise ConfigError(problems)
    return config


def _exporters(raw: Any) -> tuple[dict[str, ExporterConfig], list[str]]:
    """Each `type/name` entry validated by its type's model, and the problems found."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, ["exporters: expected a mapping of `type/name` to the exporter's settings"]
    types = registry.exporter_types()
    exporters: dict[str, ExporterConfig] = {}
    problems: list[str] = []
    for exporter_id, value in raw.items():
        type_name, slash, name = str(exporter_id).partition("/")
        exporter_type = types.get(type_name)
        if exporter_type is None or (slash and not name):
            problems.append(
                f"exporters::{exporter_id}: unknown exporter type {type_name!r}; the types are "
                f"{', '.join(types)} (name exporters `<type>` or `<type>/<name>`, e.g. `webhook/billing`)"
            )
            continue
        try:
            exporters[str(exporter_id)] = exporter_type.config.model_validate({} if value is None else value)
        except ValidationError as error:
            problems.extend(_describe({**e, "loc": ("exporters", exporter_id, *e["loc"])}) for e in error.errors())
    return exporters, problems


def _substitute(value: Any, env: Any, path: tuple[str, ...], problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*path, str(i)), problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return str(env[name])
        if default is not None:
            return default
        problems.append(f"{'::'.join(path)}: environment variable {name} is not set (or use ${{env:{name}:-default}})")
        return ""

    return _ENV.sub(replace, value)


def _describe(error: Any) -> str:
    path = "::".join(str(p) for p in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key; check its spelling against collector_config/default.yaml"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "value_error":
        return f"{path}: {error['msg'].removeprefix('Value error, ')}"
    got = error.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"{path}: {error['msg']}{shown}"


def _check_references(config: Config) -> list[str]:
    problems = []
    for receiver_id in config.receivers:
        if receiver_id.split("/")[0] != "otlp":
            problems.append(f"receivers::{receiver_id}: unknown receiver type; the built-in type is 'otlp'")
    if len(config.receivers) > 1:
        problems.append("receivers: only one otlp receiver is supported per process")
    known = {"receivers": set(config.receivers), "processors": {"usage", "pricing"}, "exporters": set(config.exporters)}
    for name, pipeline in config.service.pipelines.items():
        for kind, ids in (("receivers", pipeline.receivers), ("processors", pipeline.processors), ("exporters", pipeline.exporters)):
            for component in ids:
                if component not in known[kind]:
                    problems.append(
                        f"service::pipelines::{name}::{kind}: references {kind[:-1]} {component!r} which is not configured"
                    )
    return problems


def _check_auth(config: Config) -> list[str]:
    if config.auth.enabled or config.auth.allow_unauthenticated:
        return []
    protocols = config.otlp.protocols
    endpoints = (("grpc", protocols.grpc), ("http", protocols.http))
    exposed = [(name, e.endpoint) for name, e in endpoints if e is not None and not e.is_loopback]
    return [
        f"receivers::otlp::protocols::{name}::endpoint: {endpoint} is not a loopback address and auth is off, so anyone "
        "who can reach it could write and read usage records; set auth::enabled: true (and create keys with "
        "`spanmeter keys create`), or bind 127.0.0.1, or set auth::allow_unauthenticated: true if a proxy in front "
        "authenticates"
        for name, endpoint in exposed
    ]
