"""Configuration: one YAML file shaped like an OpenTelemetry Collector config.

    receivers:   how spans arrive (OTLP gRPC and HTTP)
    processors:  usage (which spans count, limits) and pricing (overrides, bundled prices)
    exporters:   where records go after they are stored (`webhook`), from the outbox
    storage:     where records are stored (SQLite)
    service:     the workspace, the pipeline wiring, the collector's own logs

`${env:NAME}` (or `${env:NAME:-default}`) in any string value is replaced by the environment
variable. Every problem is reported with its key path (`receivers::otlp::...`) at once, before
anything starts. With no file, the defaults below apply; collector_config/default.yaml spells them out.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from genai_prices.update_prices import DEFAULT_UPDATE_URL
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks import Webhook

from spanmeter.convert.attributes import MODEL_OPERATIONS
from spanmeter.errors import ConfigError
from spanmeter.event_loop import EventLoopChoice, uses_uvloop

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


class UsageProcessor(_Model):
    count_operations: list[str] = Field(
        sorted(MODEL_OPERATIONS),
        description="gen_ai.operation.name / llm.request.type values counted as one model call each",
    )
    max_field_chars: int = Field(4096, gt=0, description="longest id, name or meta value accepted")
    content_capture: bool = Field(False, description="store the prompt text of LLM calls in `query`")
    content_max_chars: int = Field(2000, gt=0, description="longest prompt text kept when content capture is on")
    exclusive_input_scopes: list[str] = Field(
        [],
        description="instrumentation scope names whose input tokens exclude cache reads/writes (normalised)",
    )


class PriceOverrideConfig(_Model):
    model: str = Field(description="fnmatch pattern of the model name, e.g. 'ft:gpt-4o*'")
    provider: str | None = None
    customer: str | None = Field(None, description="apply to this customer only (contract prices)")
    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(None, ge=0)
    cache_write_mtok: Decimal | None = Field(None, ge=0)


class PriceRefreshConfig(_Model):
    """Opt-in: fetch genai-prices' newest price data in the background (network access)."""

    enabled: bool = False
    interval: float = Field(3600, ge=60, description="seconds between fetches")
    url: str = Field(DEFAULT_UPDATE_URL, min_length=1, description="genai-prices' data.json (v2 format)")


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


class Storage(_Model):
    sqlite: SQLiteStorage = SQLiteStorage()


EXPORTER_TYPES: Final = ("webhook",)
_SECRET_BYTES: Final = (24, 64)  # Standard Webhooks: secrets of 24 to 64 random bytes


class ExportFilterConfig(_Model):
    workspaces: list[str] = Field([], description="only these workspaces' records (default: all)")
    kinds: list[Literal["llm", "event", "meter"]] = Field([], description="only these kinds (default: all)")
    types: list[str] = Field([], description="only these types, e.g. chat, plan_upgraded (default: all)")
    customers: list[str] = Field([], description="only these customer ids (default: all)")


class RetryOnFailure(_Model):
    initial_interval: float = Field(1.0, gt=0, description="seconds before the first retry of a failed batch")
    max_interval: float = Field(60.0, gt=0, description="longest wait between two attempts (and while paused)")
    max_elapsed_time: float = Field(
        3600.0, ge=0, description="seconds a batch is retried before its records become dead deliveries; 0: forever"
    )


class WebhookExporterConfig(_Model):
    endpoint: str = Field(description="http(s) URL each batch is POSTed to")
    secret: str | None = Field(
        None, description="Standard Webhooks secret (whsec_<base64>) that signs each request; `spanmeter exporters new-secret`"
    )
    headers: dict[str, str] = Field({}, description="extra request headers, e.g. an Authorization of the receiver")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for the receiver's answer")
    max_batch: int = Field(100, ge=1, le=10_000, description="records per request at most")
    flush_interval: float = Field(1.0, gt=0, description="seconds between looks for new records when idle")
    start_at: Literal["now", "beginning"] = Field(
        "now", description="a new exporter sends records stored from now on, or every stored record"
    )
    filter: ExportFilterConfig = ExportFilterConfig()
    retry_on_failure: RetryOnFailure = RetryOnFailure()

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not sep or not rest or rest.startswith("/"):
            raise ValueError(f"expected an http(s) URL such as https://billing.example.com/hooks/usage, got {value!r}")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = f"not a Standard Webhooks secret: expected whsec_ and the base64 of {_SECRET_BYTES[0]}-{_SECRET_BYTES[1]} random bytes; make one with `spanmeter exporters new-secret`"
        try:
            text = value.removeprefix("whsec_").rstrip("=")
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            Webhook(value)  # and the signing library takes it
        except (ValueError, binascii.Error, RuntimeError):
            raise ValueError(problem) from None
        if not _SECRET_BYTES[0] <= len(key) <= _SECRET_BYTES[1]:
            raise ValueError(problem)
        return value


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
    exporters: dict[str, WebhookExporterConfig] = {}
    storage: Storage = Storage()
    service: Service = Service()
    auth: Auth = Auth()
    api: Api = Api()

    @property
    def otlp(self) -> OTLPReceiver:
        return next(iter(self.receivers.values()))

    def active_exporters(self) -> dict[str, WebhookExporterConfig]:
        """The exporters some pipeline uses (as in the OTel Collector, others are not started)."""
        used = {e for pipeline in self.service.pipelines.values() for e in pipeline.exporters}
        return {name: exporter for name, exporter in self.exporters.items() if name in used}


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """The validated config of `path` (the defaults when None); raises ConfigError."""
    if path is None:
        return Config()
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{source}: cannot read the config file: {error.strerror or error}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: not valid YAML: {error}"]) from None
    return parse_config({} if raw is None else raw, os.environ if env is None else env)


def parse_config(raw: Any, env: dict[str, str] | os._Environ[str]) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(["the config file must be a mapping with receivers, processors, storage, service"])
    problems: list[str] = []
    raw = _substitute(raw, env, (), problems)
    if isinstance(raw.get("exporters"), dict):  # unknown types are reported here, not as webhook fields
        for exporter_id in [e for e in raw["exporters"] if str(e).split("/")[0] not in EXPORTER_TYPES]:
            problems.append(
                f"exporters::{exporter_id}: unknown exporter type; the built-in type is webhook"
                " (name exporters `webhook` or `webhook/<name>`)"
            )
            del raw["exporters"][exporter_id]
        for exporter_id, value in raw["exporters"].items():
            if value is None:  # `webhook/x:` with nothing under it
                raw["exporters"][exporter_id] = {}
    if problems:
        raise ConfigError(problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([_describe(e) for e in error.errors()]) from None
    problems.extend(_check_references(config))
    problems.extend(_check_auth(config))
    if problems:
        raise ConfigError(problems)
    return config


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
