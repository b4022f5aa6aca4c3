"""The `spanmeter` command: a thin layer over the library; library errors become clear messages."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

import spanmeter
from spanmeter.auth import new_key
from spanmeter.config import Config, load_config
from spanmeter.errors import ConfigError
from spanmeter.event_loop import describe, new_event_loop
from spanmeter.record import format_ns
from spanmeter.store.base import RecordFilter
from spanmeter.store.outbox import DELIVERY_STATES
from spanmeter.store.queries import SCOPES, ApiKey

if TYPE_CHECKING:
    from spanmeter.store.sqlite import SQLiteStore

log = logging.getLogger("spanmeter")

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (OpenTelemetry Collector shape). Default: the embedded default config.",
)
_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(spanmeter.__version__, prog_name="spanmeter")
def main() -> None:
    """spanmeter: receive OpenTelemetry spans, store exact usage records.

    Apps export traces over OTLP (gRPC :4317, HTTP :4318); LLM calls (GenAI semantic
    conventions), product events and meters become usage records with exact cost,
    stored once each in SQLite.
    """


@main.command()
@CONFIG_OPTION
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides the config.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Overrides the config.")
def serve(config_path: Path | None, log_level: str | None, log_format: str | None) -> None:
    """Run the collector until Ctrl-C or SIGTERM.

    With no -c, runs the embedded default: SQLite file spanmeter.db in the working directory,
    OTLP/gRPC on 127.0.0.1:4317 and OTLP/HTTP on 127.0.0.1:4318. On shutdown it stops
    accepting, finishes in-flight writes and exits 0.
    """
    from spanmeter.app import Collector

    config = _load(config_path)
    logs = config.service.telemetry.logs
    setup_logging(log_level or logs.level, log_format or logs.format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Collector(config).run_until(stop)

    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(config.service.event_loop)) as runner:
            log.info("event loop: %s", describe(runner.get_loop()))
            runner.run(run())
    except OSError as error:
        raise click.ClickException(f"{error}. Is another process using the port? Change it in the config.") from None


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to keep the demo's config and database. Default: a new temporary directory.")
def demo(directory: Path | None) -> None:
    """See spanmeter work end to end in seconds, with nothing configured.

    Starts a collector on free ports with a fresh database, runs a small app that calls the real
    openai SDK (official OpenTelemetry instrumentation, spanmeter.sdk usage context) against a
    local fake OpenAI API for two customers, plus product events and a meter, then prints the
    records, the totals and cost per customer, and the commands to look further.
    Needs `pip install 'spanmeter[demo]'`.
    """
    import tempfile

    from spanmeter.demo.run import MissingExtra, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_demo(directory or Path(tempfile.mkdtemp(prefix="spanmeter-demo-")), click.echo)
    except MissingExtra as error:
        raise click.ClickException(str(error)) from None


@main.command("validate-config")
@click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file to check.",
)
def validate_config(config_path: Path) -> None:
    """Check a config file and print every problem with its key path; exit 1 if any."""
    config = _load(config_path)
    otlp = config.otlp.protocols
    click.echo(f"{config_path}: valid")
    click.echo(f"  OTLP/gRPC: {otlp.grpc.endpoint if otlp.grpc else 'off'}")
    click.echo(f"  OTLP/HTTP: {otlp.http.endpoint if otlp.http else 'off'}")
    click.echo(f"  storage:   sqlite {config.storage.sqlite.path}")
    click.echo(f"  auth:      {'on (API keys)' if config.auth.enabled else 'off'}")


@main.command()
@CONFIG_OPTION
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 100_000), help="How many records.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of records with the proto's field names.")
@click.option("--customer", help="Only this customer_id.")
@click.option("--kind", type=click.Choice(["llm", "event", "meter"]), help="Only this kind.")
@click.option("--since", help="Only records that occurred since: ISO time (2026-11-01T00:00Z) or age (30m, 2h, 7d).")
def records(
    config_path: Path | None, limit: int, as_json: bool, customer: str | None, kind: str | None, since: str | None
) -> None:
    """Show the most recent usage records, newest first."""
    config, store = _configured_store(config_path)
    where = RecordFilter(
        workspace=config.service.workspace, customer_id=customer, kind=kind, since_ns=_parse_since(since)
    )
    found = store.recent(where, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        click.echo("no records")
        return
    columns = ("occurred_at", "kind", "type", "customer_id", "provider", "response_model", "input_tokens",
               "output_tokens", "cost_usd", "status")
    _print_table(columns, [[_cell(r.to_dict()[c]) for c in columns] for r in found])


@main.command()
@CONFIG_OPTION
@click.option("--metric", "-m", default="cost,total_tokens,records", show_default=True,
              help="Comma-separated: cost, input_tokens, output_tokens, total_tokens, records, quantity, "
                   "distinct_users, distinct_conversations.")
@click.option("--group-by", "-g", default="", help="Comma-separated: customer, provider, model, kind, type, meter, meta.KEY.")
@click.option("--window", "-w", type=click.Choice(["hour", "day", "month", "none"]), default="day", show_default=True)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the windows, e.g. Europe/Paris.")
@click.option("--since", default="30d", show_default=True,
              help="ISO time or age (30m, 2h, 7d); an age starts at the beginning of its window, so the first is whole.")
@click.option("--until", help="ISO time (exclusive). Default: now.")
@click.option("--customer", help="Only this customer_id.")
@click.option("--kind", type=click.Choice(["llm", "event", "meter"]), help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON of GET /api/v1/usage/aggregate.")
def usage(config_path: Path | None, metric: str, group_by: str, window: str, tz: str, since: str,
          until: str | None, customer: str | None, kind: str | None, as_json: bool) -> None:
    """Usage totals per window and group: the CLI twin of GET /api/v1/usage/aggregate.

    e.g. `spanmeter usage --group-by customer --window day --since 30d` (cost, tokens and records
    of each customer per UTC day over the last 30 days), for the config's service::workspace.
    """
    from spanmeter.api.aggregate import money, render
    from spanmeter.store.aggregate import (
        AggregateQuery,
        Window,
        group_by_from,
        metrics_from,
        window_start,
        zone,
    )
    from spanmeter.store.queries import EQUALITY_FILTERS, RecordQuery

    try:
        metrics, dimensions, zone_info = metrics_from(metric), group_by_from(group_by, 4), zone(tz)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    windowed = cast("Window", window)
    start = _parse_since(since) or 0
    if _RELATIVE.match(since.strip()):
        start = window_start(zone_info, windowed, start)
    equals = tuple((EQUALITY_FILTERS[n], v) for n, v in (("customer", customer), ("kind", kind)) if v is not None)
    config, store = _open_store(config_path)
    where = RecordQuery(workspace=config.service.workspace, equals=equals, from_ns=start, to_ns=_parse_since(until))
    query = AggregateQuery(metrics, dimensions, where, windowed, tz)
    result = store.aggregate(query)
    if as_json:
        click.echo(json.dumps(json.loads(render(query, result)), indent=2))
        return
    if not result.rows:
        click.echo("no usage in this range")
        return
    labels = {"hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d", "month": "%Y-%m"}
    columns = (*(["window"] if window != "none" else []), *dimensions, *metrics)
    table = []
    for row in result.rows:
        cells = []
        if row.window_start is not None:
            cells.append(datetime.fromtimestamp(row.window_start // 10**9, zone_info).strftime(labels[window]))
        cells += [value if value is not None else "-" for value in row.group]
        cells += [money(row.values[m]) if m == "cost" else str(row.values[m]) for m in metrics]
        table.append(cells)
    _print_table(columns, table)


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _print_rows(rows: list[dict[str, str]], as_json: bool, empty: str, clip: dict[str, int] | None = None) -> None:
    """Rows as a JSON array (--json) or a table, with columns in `clip` cut to that many characters."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(empty)
        return
    columns = list(rows[0])
    limits = clip or {}
    _print_table(columns, [[r[c][: limits.get(c)] for c in columns] for r in rows])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text[:40]


def _parse_since(value: str | None) -> int | None:
    if value is None:
        return None
    if match := _RELATIVE.match(value.strip()):
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time_ns() - seconds * 1_000_000_000
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an ISO time like 2026-11-01T00:00Z or an age like 30m, 2h, 7d",
                                 param_hint="--since") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(int(when.timestamp() * 1_000_000_000), 2**63 - 1)  # SQLite integers are int64


# --- API keys ---------------------------------------------------------------------------------
def _configured_store(config_path: Path | None, *, create: bool = False) -> tuple[Config, SQLiteStore]:
    """The configured store. Only `create` accepts a path with no database yet: a command that
    reads (or changes what exists) on a mistyped path must say so, not leave an empty database behind."""
    from spanmeter.app import build_store

    config = _load(config_path)
    store = build_store(config)
    if not create and not store.path.exists():
        raise click.ClickException(f"no database at {store.path}; run `spanmeter serve` first (or pass -c)")
    return config, store


def _open_store(config_path: Path | None, *, create: bool = False) -> tuple[Config, SQLiteStore]:
    """The configured store, migrated (see _configured_store for `create`)."""
    config, store = _configured_store(config_path, create=create)
    store.migrate()
    return config, store


def _key_row(key: ApiKey) -> dict[str, str]:
    return {
        "id": key.id,
        "workspace": key.workspace,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": ",".join(key.scopes),
        "state": key.state,
        "created_at": format_ns(key.created_at),
    }


@main.group()
def keys() -> None:
    """Manage API keys (used when `auth: enabled: true`).

    A key belongs to one workspace and has scopes: ingest (send spans and events), read (query
    usage), admin (both). Only a hash is stored: the key is printed once, at creation.
    """


@keys.command("create")
@CONFIG_OPTION
@click.option("--workspace", "-w", help="Workspace of the key. Default: service::workspace of the config.")
@click.option("--name", "-n", default="", help="A label to recognise the key by.")
@click.option("--scope", "-s", "scopes", multiple=True, type=click.Choice(SCOPES), default=("ingest", "read"),
              show_default=True, help="Repeat for several scopes.")
def keys_create(config_path: Path | None, workspace: str | None, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it (the only time it is shown)."""
    config, store = _open_store(config_path, create=True)  # keys may be made before the first serve
    try:
        secret, record = new_key(workspace or config.service.workspace, name, scopes)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    store.create_key(record)
    click.echo(secret)
    click.echo(f"created {record.id} in workspace {record.workspace!r} with scopes {','.join(record.scopes)}; "
               "store the key now: it cannot be shown again", err=True)


@keys.command("list")
@CONFIG_OPTION
@click.option("--workspace", "-w", help="Only this workspace.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def keys_list(config_path: Path | None, workspace: str | None, as_json: bool) -> None:
    """List keys (id, workspace, name, prefix, scopes, state); never the keys themselves."""
    _, store = _open_store(config_path)
    _print_rows([_key_row(k) for k in store.list_keys(workspace)], as_json, "no keys")


def _set_state(config_path: Path | None, key_id: str, state: str) -> None:
    _, store = _open_store(config_path)
    try:
        key = store.set_key_state(key_id, state)
    except KeyError:
        raise click.ClickException(f"no key with id {key_id!r}; see `spanmeter keys list`") from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{key.id}: {key.state}")


@keys.command("deactivate")
@CONFIG_OPTION
@click.argument("key_id")
def keys_deactivate(config_path: Path | None, key_id: str) -> None:
    """Suspend a key (401 "Inactive API key") until it is activated again."""
    _set_state(config_path, key_id, "inactive")


@keys.command("activate")
@CONFIG_OPTION
@click.argument("key_id")
def keys_activate(config_path: Path | None, key_id: str) -> None:
    """Re-enable a deactivated key."""
    _set_state(config_path, key_id, "active")


@keys.command("revoke")
@CONFIG_OPTION
@click.argument("key_id")
def keys_revoke(config_path: Path | None, key_id: str) -> None:
    """Revoke a key for good (401 "Revoked API key"); it cannot be activated again."""
    _set_state(config_path, key_id, "revoked")


# --- exporters and their deliveries -----------------------------------------------------------
@main.group()
def exporters() -> None:
    """Exporters send stored records on (config `exporters:`, e.g. `webhook/billing`).

    Every record is pending for each exporter whose filter matches from the moment it is stored;
    `spanmeter serve` sends them in order and retries failures. See `spanmeter deliveries`.
    """


@exporters.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def exporters_status(config_path: Path | None, as_json: bool) -> None:
    """Where each exporter stands: records behind, the batch in hand, retries, dead deliveries."""
    config, store = _open_store(config_path)
    active = config.active_exporters()
    rows = []
    for state in store.exporter_states():
        rows.append({
            "exporter": state.exporter,
            "configured": "yes" if state.exporter in active else "no",
            "sent_through_seq": str(state.position),
            "behind": str(state.behind),
            "attempts": str(state.attempts),
            "next_attempt": format_ns(state.next_attempt_at) if state.attempts else "-",
            "dead": str(state.dead),
            "pending_retry": str(state.pending),
            "last_error": state.last_error or "-",
        })
    _print_rows(rows, as_json, "no exporter has run on this database yet", {"last_error": 60})


@exporters.command("new-secret")
def exporters_new_secret() -> None:
    """Print a new Standard Webhooks secret (whsec_...) for a webhook exporter's `secret`."""
    import base64
    import os

    click.echo("whsec_" + base64.b64encode(os.urandom(32)).decode())


@main.group()
def deliveries() -> None:
    """Dead deliveries: records an exporter gave up on (the target refused them, or kept failing
    past `retry_on_failure::max_elapsed_time`). List them, fix the cause, send them again."""


@deliveries.command("list")
@CONFIG_OPTION
@click.option("--exporter", "-e", help="Only this exporter (e.g. webhook/billing).")
@click.option("--state", type=click.Choice(DELIVERY_STATES), default="dead", show_default=True,
              help="dead, or pending: sent again and not delivered yet.")
@click.option("--limit", "-n", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def deliveries_list(config_path: Path | None, exporter: str | None, state: str, limit: int, as_json: bool) -> None:
    """List dead (or re-sent) deliveries with the reason of their last failure."""
    _, store = _open_store(config_path)
    found = store.deliveries(exporter, state, limit)
    rows = [
        {
            "exporter": d.exporter,
            "record_id": d.record_id,
            "customer_id": d.customer_id or "-",
            "kind": d.kind,
            "type": d.type,
            "state": d.state,
            "attempts": str(d.attempts),
            "updated_at": format_ns(d.updated_at),
            "reason": d.reason or "-",
        }
        for d in found
    ]
    _print_rows(rows, as_json, f"no {state} deliveries", {"reason": 120})


@deliveries.command("retry")
@CONFIG_OPTION
@click.option("--exporter", "-e", help="Only this exporter's dead deliveries.")
@click.option("--all", "all_dead", is_flag=True, help="Every dead delivery (of --exporter, if given).")
@click.argument("record_ids", nargs=-1)
def deliveries_retry(config_path: Path | None, exporter: str | None, all_dead: bool, record_ids: tuple[str, ...]) -> None:
    """Send dead deliveries again: the given record ids, or --all.

    A running `spanmeter serve` picks them up within its flush interval, before newer records.
    """
    if bool(record_ids) == all_dead:
        raise click.UsageError("give record ids (from `spanmeter deliveries list`) or --all, not both")
    _, store = _open_store(config_path)
    done = store.requeue_dead(exporter, list(record_ids) if record_ids else None)
    if not done.count:
        raise click.ClickException("no dead delivery matched; see `spanmeter deliveries list`")
    click.echo(f"{done.count} deliveries will be sent again by {', '.join(done.exporters)}")
