"""The `spanmeter` command: a thin layer over the library; library errors become clear messages."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

import click

import spanmeter
from spanmeter.auth import QUOTA_HELP, new_key, parse_quota
from spanmeter.config import Config, load_config
from spanmeter.errors import ConfigError, ListenError, StorageError
from spanmeter.event_loop import describe, new_event_loop
from spanmeter.money import from_nano
from spanmeter.record import decimal_string, format_ns
from spanmeter.store.base import RecordFilter
from spanmeter.store.outbox import DELIVERY_STATES, ExportFilter
from spanmeter.store.queries import SCOPES, ApiKey

if TYPE_CHECKING:
    from spanmeter.store.port import Store

log = logging.getLogger("spanmeter")

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (OpenTelemetry Collector shape). Default: the embedded default config.",
)
_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def _load(path: Path | None, *, sending: bool = True) -> Config:
    """The config; `sending=False` for commands that send nothing (exporters' secrets not needed)."""
    try:
        return load_config(path, sending=sending)
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
    # Libraries' per-request INFO lines (httpx logs every exporter POST) would drown the collector's own.
    for name in ("uvicorn.error", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class _Commands(click.Group):
    """A command whose store cannot be opened or read (PostgreSQL unreachable, say) ends with one
    line saying why and where to fix it, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StorageError as error:
            raise click.ClickException(f"{error} (check `storage` in the config)") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    except ListenError as error:  # a busy port: one line naming it and its config key
        raise click.ClickException(str(error)) from None
    except StorageError as error:  # the database cannot be opened or written: says which and why
        raise click.ClickException(str(error)) from None


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
    if config.storage.postgres is not None:
        from spanmeter.store.postgres.connection import redacted

        click.echo(f"  storage:   postgres {redacted(config.storage.postgres.dsn)}")
    else:
        click.echo(f"  storage:   sqlite {config.storage.sqlite.path}")
    click.echo(f"  auth:      {'on (API keys)' if config.auth.enabled else 'off'}")


@main.command()
@CONFIG_OPTION
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 100_000), help="How many records.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of records with the proto's field names.")
@click.option("--workspace", "-w", help="The workspace to read. Default: service::workspace of the config.")
@click.option("--customer", help="Only this customer_id.")
@click.option("--kind", type=click.Choice(["llm", "event", "meter"]), help="Only this kind.")
@click.option("--since", help="Only records that occurred since: ISO time (2026-11-01T00:00Z) or age (30m, 2h, 7d).")
def records(
    config_path: Path | None,
    limit: int,
    as_json: bool,
    workspace: str | None,
    customer: str | None,
    kind: str | None,
    since: str | None,
) -> None:
    """Show the records that occurred last, newest first (by occurred_at, the span's start).

    The table shows the main fields (an unknown model's cost is `unknown`: it was not priced);
    --json shows every field.
    """
    config, store = _configured_store(config_path)
    workspace = workspace or config.service.workspace
    where = RecordFilter(workspace=workspace, customer_id=customer, kind=kind, since_ns=_parse_since(since))
    found = store.recent(where, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        filtered = " matching --customer/--kind/--since" if (customer or kind or since) else ""
        others = [w for w in store.workspaces() if w != workspace]
        hint = f"; workspaces with records: {', '.join(others)} (choose one with --workspace)" if others else ""
        click.echo(f"no records in workspace {workspace!r}{filtered}{hint}")
        return
    _print_table(_RECORD_COLUMNS, [_record_row(r.to_dict()) for r in found])


_RECORD_COLUMNS: Final = ("occurred_at", "kind", "type", "customer_id", "provider", "request_model", "response_model",
                          "input_tokens", "output_tokens", "quantity", "cost_usd", "status")


def _record_row(record: dict[str, Any]) -> list[str]:
    row = [_cell(record[c], 40) for c in _RECORD_COLUMNS]
    if record["cost_usd"] is None and record["cost_source"] == "unknown":  # not priced: never shown as 0 or blank
        row[_RECORD_COLUMNS.index("cost_usd")] = "unknown"
    return row


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
    where = RecordQuery(workspace=config.service.workspace, equals=equals, from_ns=start, to_ns=_parse_since(until, "--until"))
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


def _print_rows(
    rows: Sequence[Mapping[str, Any]], as_json: bool, empty: str, clip: dict[str, int] | None = None
) -> None:
    """Rows as a JSON array with typed values (--json, nothing cut), or a table whose columns in
    `clip` are cut to that many characters, with an ellipsis."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(empty)
        return
    columns = list(rows[0])
    limits = clip or {}
    _print_table(columns, [[_cell(r[c], limits.get(c)) for c in columns] for r in rows])


def _cell(value: object, width: int | None = None) -> str:
    """A table cell: `-` for none, yes/no for booleans, at most `width` characters (… marks a cut)."""
    if value is None:
        return "-"
    text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _parse_since(value: str | None, option: str = "--since") -> int | None:
    """An ISO time or an age (30m, 2h, 7d) as Unix nanoseconds; a bad value is named by its `option`."""
    if value is None:
        return None
    if match := _RELATIVE.match(value.strip()):
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time_ns() - seconds * 1_000_000_000
    try:
        when = datetime.fromisoformat(value)  # takes a trailing Z since Python 3.11
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an ISO time like 2026-11-01T00:00Z or an age like 30m, 2h, 7d",
                                 param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(int(when.timestamp() * 1_000_000_000), 2**63 - 1)  # SQLite integers are int64


# --- API keys ---------------------------------------------------------------------------------
def _configured_store(config_path: Path | None, *, create: bool = False) -> tuple[Config, Store]:
    """The configured store. Only `create` accepts a path with no database yet: a command that
    reads (or changes what exists) on a mistyped path must say so, not leave an empty database behind."""
    from spanmeter.store.factory import open_store

    config = _load(config_path, sending=False)
    store = open_store(config)
    context = click.get_current_context(silent=True)
    if context is not None:  # closed with the command: a PostgreSQL pool left to the garbage collector fails
        context.call_on_close(lambda: asyncio.run(store.close()))
    try:
        found = create or store.exists()
    except StorageError as error:  # a database server that cannot be reached
        raise click.ClickException(f"{error} ({config.storage.where_key} in the config)") from None
    if not found:
        where = f"storage::sqlite::path of {config_path}" if config_path else "the default, without -c"
        raise click.ClickException(
            f"no database at {store.location} ({where}); run `spanmeter serve` first (or pass -c)"
        )
    return config, store


def _open_store(config_path: Path | None, *, create: bool = False) -> tuple[Config, Store]:
    """The configured store, migrated (see _configured_store for `create`)."""
    config, store = _configured_store(config_path, create=create)
    try:
        store.migrate()
    except StorageError as error:
        raise click.ClickException(f"{error} ({config.storage.where_key} in the config)") from None
    return config, store


def _key_row(key: ApiKey) -> dict[str, str]:
    return {
        "id": key.id,
        "workspace": key.workspace,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": ",".join(key.scopes),
        "state": key.state,
        "quota": _describe_quota(key.quota_records, key.quota_cost_nano),
        "created_at": format_ns(key.created_at),
    }


def _describe_quota(records: int | None, cost_nano: int | None) -> str:
    parts = [] if records is None else [f"{records} records/month"]
    if cost_nano is not None:
        parts.append(f"${decimal_string(from_nano(cost_nano))}/month")
    return ", ".join(parts) or "none"


def _quotas(values: tuple[str, ...]) -> tuple[int | None, int | None]:
    """(records, cost in nano-USD) of repeated `--quota` values: at most one of each kind."""
    found: dict[str, int] = {}
    for value in values:
        try:
            kind, amount = parse_quota(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--quota") from None
        if kind in found:
            raise click.BadParameter(f"{value!r}: give at most one quota of each kind", param_hint="--quota")
        found[kind] = amount
    return found.get("records"), found.get("cost_nano")


QUOTA_OPTION = click.option(
    "--quota", "quotas", multiple=True, metavar="QUOTA",
    help=f"Monthly quota of the key's workspace (calendar month, UTC): {QUOTA_HELP}; repeat for both. "
    "The REST ingest endpoints answer 402 once it is used up.",
)  # fmt: skip


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
@QUOTA_OPTION
def keys_create(
    config_path: Path | None, workspace: str | None, name: str, scopes: tuple[str, ...], quotas: tuple[str, ...]
) -> None:
    """Create a key and print it (the only time it is shown)."""
    records, cost_nano = _quotas(quotas)
    config, store = _open_store(config_path, create=True)  # keys may be made before the first serve
    try:
        secret, record = new_key(workspace or config.service.workspace, name, scopes)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    store.create_key(replace(record, quota_records=records, quota_cost_nano=cost_nano))
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


@keys.command("update")
@CONFIG_OPTION
@click.argument("key_id")
@QUOTA_OPTION
@click.option("--no-quota", is_flag=True, help="Remove the key's quotas.")
def keys_update(config_path: Path | None, key_id: str, quotas: tuple[str, ...], no_quota: bool) -> None:
    """Set (replace) or remove a key's monthly quota."""
    if no_quota == bool(quotas):
        raise click.UsageError("give --quota (once or twice) or --no-quota")
    records, cost_nano = _quotas(quotas)
    _, store = _open_store(config_path)
    try:
        key = store.set_key_quota(key_id, records, cost_nano)
    except KeyError:
        raise click.ClickException(f"no key with id {key_id!r}; see `spanmeter keys list`") from None
    click.echo(f"{key.id}: quota {_describe_quota(key.quota_records, key.quota_cost_nano)}")


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
def models() -> None:
    """Models in the stored records, by how they were priced."""


@models.command("unknown")
@CONFIG_OPTION
@click.option("--since", help="Only records that occurred since: ISO time (2026-11-01T00:00Z) or age (30m, 2h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def models_unknown(config_path: Path | None, since: str | None, as_json: bool) -> None:
    """Models stored as cost_source=unknown (no price in genai-prices or the overrides), with their
    record counts: add them under processors::pricing::overrides, or turn on
    processors::pricing::refresh to pick up genai-prices' newest data. Records already stored keep
    cost_source=unknown; new ones are priced."""
    config, store = _open_store(config_path)
    rows = [
        {
            "provider": found.provider or "-",
            "model": found.model or "-",
            "records": str(found.records),
            "input_tokens": str(found.input_tokens),
            "output_tokens": str(found.output_tokens),
            "first_seen": format_ns(found.first_at),
            "last_seen": format_ns(found.last_at),
        }
        for found in store.unknown_models(config.service.workspace, _parse_since(since))
    ]
    _print_rows(rows, as_json, "no unknown models: every llm record with tokens was priced")


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
    """Where each exporter stands: records behind and the age of the oldest, retries, records
    pending a retry, dead deliveries, and its totals (records delivered, attempts retried).

    behind: records stored after the last one it sent (before its filter), the batch in hand
    included. pending_retry: records waiting to be sent again (a failed batch in backoff, or dead
    deliveries sent again); `spanmeter deliveries list --state pending` lists them. With a
    Fluxrate exporter that aggregates: dead_windows, window totals Fluxrate refused for good (kept
    in its state file for manual reconciliation; the log has each one's key and total), and the
    last one's error.

    skipped: records the exporter left out, never sent, so never billed through it (a Fluxrate
    exporter: no meter token for the record's type or meter, or no quantity above 0); not counted
    in delivered. Listed below the table per reason, with the latest one's cause and what to
    change (--json: `skips`); the column is shown only when some exporter skipped records.
    Records skipped so far are not sent again.
    """
    from spanmeter.exporters.fluxrate_windows import dead_windows_by_exporter

    config, store = _open_store(config_path)
    active = config.active_exporters()
    now = time.time_ns()
    rows: list[dict[str, Any]] = []
    skips: list[list[dict[str, Any]]] = []  # each row's skipped records, per reason
    for state in store.exporter_states(_export_filters(config)):
        oldest = state.oldest_pending_at
        rows.append({
            "exporter": state.exporter,
            "configured": state.exporter in active,
            "sent_through_seq": state.position,
            "behind": state.behind,
            "attempts": state.attempts,
            "next_attempt": format_ns(state.next_attempt_at) if state.attempts else None,
            "pending_retry": state.pending,
            "dead": state.dead,
            "delivered": state.delivered,
            "retried": state.retried,
            "skipped": sum(skip.count for skip in state.skipped),
            "oldest_pending_seconds": None if oldest is None else round(max(0, now - oldest) / 1e9, 1),
            "last_error": state.last_error,
        })
        skips.append([
            {"reason": skip.reason, "count": skip.count, "latest": skip.detail, "latest_at": format_ns(skip.updated_at)}
            for skip in state.skipped
        ])
    if windows := dead_windows_by_exporter(config.exporters):  # columns only when some exporter has them
        for row in rows:
            found = windows.get(row["exporter"])
            row["dead_windows"] = None if found is None else found.count
            row["dead_window_error"] = None if found is None else found.last_error
    if as_json:
        rows = [{**row, "skips": skipped} for row, skipped in zip(rows, skips, strict=True)]
    elif not any(skips):  # the column only when some exporter skipped records (--json: always)
        rows = [{k: v for k, v in row.items() if k != "skipped"} for row in rows]
    _print_rows(rows, as_json, "no exporter has run on this database yet", {"last_error": 80, "dead_window_error": 80})
    if not as_json and any(skips):
        click.echo("\nskipped records (never sent, so not billed through the exporter; those so far are not sent again):")
        for row, skipped in zip(rows, skips, strict=True):
            for skip in skipped:
                click.echo(f"  {row['exporter']}: {skip['count']} {skip['reason']}; latest: {skip['latest']}")


def _export_filters(config: Config) -> dict[str, ExportFilter]:
    return {name: c.filter.export_filter() for name, c in config.exporters.items()}


@exporters.command("check")
@CONFIG_OPTION
@click.argument("exporter_id")
def exporters_check(config_path: Path | None, exporter_id: str) -> None:
    """Test EXPORTER_ID's target (e.g. through its dry-run endpoint) without sending a record;
    exit 1 if the target refuses. Only types that can do that offer it."""
    from spanmeter.exporters import registry
    from spanmeter.exporters.base import Checkable

    config = _load(config_path)
    settings = config.exporters.get(exporter_id)
    if settings is None:
        configured = ", ".join(config.exporters) or "none"
        raise click.ClickException(f"no exporter {exporter_id!r} in the config (configured: {configured})")
    exporter = registry.create(exporter_id, settings)
    try:
        if not isinstance(exporter, Checkable):
            type_name = exporter_id.split("/", 1)[0]
            raise click.ClickException(
                f"{exporter_id}: the {type_name} exporter type has no check (it cannot test its target without"
                " sending records); `spanmeter exporters status` shows how its deliveries go"
            )
        result = exporter.check()
    finally:
        exporter.close()
    click.echo(f"{exporter_id}: {'ok' if result.ok else 'refused'}: {result.summary}")
    if not result.ok:
        sys.exit(1)


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
              help="dead (given up), or pending: waiting to be sent again (a failed batch in backoff, "
                   "or dead deliveries sent again with `deliveries retry`).")
@click.option("--limit", "-n", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def deliveries_list(config_path: Path | None, exporter: str | None, state: str, limit: int, as_json: bool) -> None:
    """List dead (or pending) deliveries with the reason of their last failure. (A Fluxrate
    window total refused for good is no record: `spanmeter exporters status` counts those.)"""
    config, store = _open_store(config_path)
    found = store.deliveries(exporter, state, limit, _export_filters(config))
    rows: list[dict[str, Any]] = [
        {
            "exporter": d.exporter,
            "record_id": d.record_id,
            "customer_id": d.customer_id,
            "kind": d.kind,
            "type": d.type,
            "state": d.state,
            "attempts": d.attempts,
            "updated_at": format_ns(d.updated_at),
            "reason": d.reason,
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
    if not record_ids and not all_dead:
        raise click.UsageError(
            "say which dead deliveries to send again: their record ids (the record_id column of "
            "`spanmeter deliveries list`), or --all for every one (of --exporter, if given)"
        )
    if record_ids and all_dead:
        raise click.UsageError("give record ids or --all, not both")
    _, store = _open_store(config_path)
    done = store.requeue_dead(exporter, list(record_ids) if record_ids else None)
    if not done.count:
        raise click.ClickException("no dead delivery matched; see `spanmeter deliveries list`")
    click.echo(f"{done.count} deliveries will be sent again by {', '.join(done.exporters)}")


# --- CSV exports for CRMs ----------------------------------------------------------------------
@main.group("export")
def export_group() -> None:
    """Export stored records as files (`spanmeter export csv`)."""


@export_group.command("csv")
@CONFIG_OPTION
@click.option("--kind", type=click.Choice(["actions", "accounts"]), default="actions", show_default=True,
              help="actions: one row per record; accounts: one row per account domain.")
@click.option("--since", help="Only records that occurred since: ISO time (2026-11-01T00:00Z) or age (30m, 2h, 7d).")
@click.option("--until", help="Only records that occurred before this ISO time.")
@click.option("--customer", help="Only this customer_id.")
@click.option("--workspace", "-w", help="The workspace to read. Default: service::workspace of the config.")
@click.option("--template", type=click.Choice(["generic", "hubspot", "salesforce"]),
              help="Column names and formats of a CRM's import tool. Default: generic (or --exporter's).")
@click.option("--exporter", "exporter_id",
              help="Take template, columns, email, action kinds, BOM and filter from this configured csv exporter.")
@click.option("--record-kind", "record_kinds", multiple=True, type=click.Choice(["event", "llm", "meter"]),
              help="Which records are action rows (repeatable). Default: event (or --exporter's).")
@click.option("--no-email", is_flag=True, help="Leave the email column out.")
@click.option("--bom", is_flag=True, help="Start the file with a UTF-8 byte-order mark (for Excel).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Processes that write an actions file, each a share of the records (SQLite store); 1: this "
                   "process alone, on one core.")
@click.option("--out", "-o", "out", default="-", show_default=True,
              help="File to write (replaced atomically: written aside, then renamed), or - for standard output.")
def export_csv(config_path: Path | None, kind: str, since: str | None, until: str | None, customer: str | None,
               workspace: str | None, template: str | None, exporter_id: str | None, record_kinds: tuple[str, ...],
               no_email: bool, bom: bool, jobs: int, out: str) -> None:
    """Write the actions or accounts CSV a CRM imports as it is (HubSpot, Salesforce, a warehouse).

    Reads the store in storage order a page at a time (memory stays small for any size), shows a
    progress bar on a terminal, and says what it wrote. Account domains come from the records,
    else from a business email's domain, never from free-mail or disposable domains; cells that a
    spreadsheet would run as formulas are neutralised.
    """
    from spanmeter.crm.export import Selection, write_export
    from spanmeter.crm.files import replace_atomically
    from spanmeter.crm.parallel import ShareFailed, write_actions
    from spanmeter.crm.templates import Kind
    from spanmeter.exporters.csv import CsvConfig
    from spanmeter.store.factory import open_store

    config, store = _open_store(config_path)
    settings = CsvConfig(directory=".")
    if exporter_id is not None:
        found = config.exporters.get(exporter_id)
        if not isinstance(found, CsvConfig):
            csv_ones = [name for name, c in config.exporters.items() if isinstance(c, CsvConfig)]
            raise click.BadParameter(f"no csv exporter {exporter_id!r} in the config (csv exporters: "
                                     f"{', '.join(csv_ones) or 'none'})", param_hint="--exporter")
        settings = found
    if template is not None:  # the exporter's custom column mappings, if any, still apply
        settings = settings.model_copy(update={"template": template})
    columns = settings.chosen_template()
    if no_email:
        columns = columns.without("email")
    where = settings.filter.export_filter()
    selection = Selection(
        (workspace,) if workspace else (where.workspaces or (config.service.workspace,)),
        _parse_since(since), _parse_since(until, "--until") if until else None, customer, where,
    )
    kinds = record_kinds or tuple(settings.action_kinds)
    counted = kinds if kind == "actions" else ("event", "llm", "meter")  # the bar counts what is read as rows
    total = sum(_records_in(store, w, customer, selection.from_ns, selection.to_ns, counted)
                for w in selection.workspaces)
    bar = click.progressbar(length=total, label=f"reading {total:,} records", file=sys.stderr, show_pos=True) \
        if sys.stderr.isatty() and total else None
    started = time.monotonic()
    export_kind = cast("Kind", kind)
    on_page = bar.update if bar is not None else None

    def write(target: BinaryIO) -> int:
        if export_kind == "actions" and jobs > 1:
            written = write_actions(target, store, lambda: open_store(config), columns, selection, kinds, jobs=jobs,
                                    bom=bom or settings.bom, on_page=on_page)
            if written is not None:
                return written
        return write_export(target, store, export_kind, columns, selection, action_kinds=kinds,
                            bom=bom or settings.bom, on_page=on_page)

    try:
        if out == "-":
            rows = write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with replace_atomically(Path(out)) as target:
                rows = write(target)
    except OSError as error:
        raise click.ClickException(f"cannot write {out}: {error}") from None
    except ShareFailed as error:
        raise click.ClickException(str(error)) from None
    finally:
        if bar is not None:
            bar.render_finish()
    where_to = "standard output" if out == "-" else out
    click.echo(f"wrote {rows:,} {kind} rows ({columns.name} template) to {where_to} in {time.monotonic() - started:.1f} s",
               err=True)


def _records_in(store: Store, workspace: str, customer: str | None, from_ns: int | None, to_ns: int | None,
                kinds: tuple[str, ...]) -> int:
    """Records of `kinds` that occurred in the range's whole UTC days (from the daily totals, a
    few rows): the progress bar's length, an upper bound."""
    day = 86_400 * 10**9
    end = to_ns if to_ns is not None else time.time_ns()
    totals = store.period_totals(workspace, customer, (from_ns or 0) // day * day, -(-end // day) * day)
    per_kind = {"llm": totals.messages, "event": totals.events, "meter": totals.meter_records}
    return sum(per_kind[k] for k in kinds)
