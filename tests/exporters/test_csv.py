"""The csv exporter end to end: the real OTel SDK exports a mixed data set to a running
spanmeter, whose `csv` exporter writes actions.csv and accounts.csv; the files are read back with
Python's `csv` module and checked row by row, and total by total, against the store.

What a user depends on: every stored record is one action row (no more, none lost, duplicates
stored once), in storage order; the accounts' totals equal the store's; free-mail users are never
an account; `spanmeter export csv` writes the same rows; `kill -9` while appending or rewriting
loses nothing, repeats nothing and never leaves a half-written file.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Tracer

from spanmeter.cli import main
from spanmeter.crm.domains import account_domain
from spanmeter.record import UsageRecord, new_record_id
from spanmeter.store.sqlite import SQLiteStore
from tests.conftest import make_config, running_collector
from tests.exporters.harness import export, wait_for
from tests.otlp_helpers import T0, llm_attributes, make_spans
from tests.test_crash import free_port, start_server

EXPORTER = "csv/crm"
FAST = {"flush_interval": 0.05, "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.2}}
PEOPLE = (  # (user, email, account domain on the span or None)
    ("ann", "ann@acme.com", None),
    ("bob", "bob@Acme.COM", None),
    ("cy", "cy@gmail.com", None),  # free-mail: no account
    ("dee", "dee@mailinator.com", "www.Globex.example"),  # the span's domain wins
    ("eve", "eve@initech.io", None),
    ("fay", "fay@bücher.example", None),  # IDN
)
FAMILIES = ("intent", "evaluation", "activation", "retention", "expansion", "commercial")


def mixed_spans(count: int) -> Sequence[ReadableSpan]:
    """LLM calls, product events and meter records of several people, occurred_at out of order
    (each span starts earlier or later than the one before), a few with awkward text."""

    def build(tracer: Tracer) -> None:
        for i in range(count):
            user, email, domain = PEOPLE[i % len(PEOPLE)]
            start = T0 + ((i * 7919) % count) * 1_000_000_000  # a permutation: out of order
            who = {"user.id": user, "user.email": email, **({"usage.account.domain": domain} if domain else {})}
            if i % 3 == 0:
                attributes = {**llm_attributes(input_tokens=100 + i, output_tokens=10), **who}
            elif i % 3 == 1:
                attributes = {
                    **who,
                    "usage.event.name": "=HYPERLINK(\"http://x\")" if i == 4 else f"step_{i % 4}",
                    "usage.event.family": FAMILIES[i % 6],
                    "usage.product.id": f"p{i % 2}",
                    "usage.product.name": "Widget, \"Pro\"\nedition" if i % 2 else "-Gadget",
                    "usage.product.type": "library",
                    "usage.source": "@web",
                    "usage.campaign.id": "spring",
                }
            else:
                attributes = {**who, "usage.meter": "pages", "usage.quantity": 2.5}
            with tracer.start_as_current_span(f"op {i}", kind=SpanKind.INTERNAL, attributes=attributes,
                                              start_time=start):
                pass

    return make_spans(build, {"usage.customer.id": "cust-1"})


def csv_settings(directory: Path, **extra: Any) -> dict[str, Any]:
    return {"directory": str(directory), "start_at": "beginning", "accounts_interval": 0.2,
            "action_kinds": ["event", "llm", "meter"], **FAST, **extra}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def stored(db: Path) -> list[UsageRecord]:
    """Every record of the store, in storage order."""
    store = SQLiteStore(db)
    return [record for _, record in store.query_records(_everything())]


def _everything() -> Any:
    from spanmeter.store.queries import RecordQuery

    return RecordQuery(workspace="default", order="asc", limit=100_000)


def expected_accounts(records: list[UsageRecord]) -> dict[str, dict[str, Any]]:
    """The accounts computed here, plainly, from the store's records."""
    found: dict[str, dict[str, Any]] = defaultdict(lambda: {"times": [], "devs": set(), "families": Counter(),
                                                            "llm": 0, "tokens": 0, "cost": Decimal(0)})
    for r in records:
        domain = account_domain(r.account_domain, r.email)
        if domain is None:
            continue
        a = found[domain]
        a["times"].append(r.occurred_at)
        a["devs"].add(r.user_id)
        a["cost"] += r.cost_usd or 0
        if r.kind == "llm":
            a["llm"] += 1
            a["tokens"] += r.total_tokens or (r.input_tokens or 0) + (r.output_tokens or 0)
        if r.kind == "event":
            a["families"][r.event_family] += 1
    return found


def test_every_record_is_one_row_and_accounts_match_the_store(tmp_path: Path) -> None:
    out = tmp_path / "crm"
    spans = mixed_spans(60)
    config = make_config(tmp_path, exporters={EXPORTER: csv_settings(out)},
                         service={"pipelines": {"usage": {"exporters": [EXPORTER]}}})
    with running_collector(config) as collector:
        export(collector.http_url, spans)
        export(collector.http_url, spans[:10])  # sent again: duplicates, stored once
        assert len(collector.records()) == 60
        wait_for(lambda: (out / "actions.csv").exists() and len(read_csv(out / "actions.csv")) >= 60, what="rows")
        records = stored(tmp_path / "spanmeter.db")
        wait_for(lambda: (out / "accounts.csv").exists()
                 and {r["account_domain"] for r in read_csv(out / "accounts.csv")} == set(expected_accounts(records)),
                 what="accounts")
    actions = read_csv(out / "actions.csv")
    # one row per stored record, in storage order, none twice
    assert [row["idempotency_key"] for row in actions] == [r.idempotency_key for r in records]
    by_key = {r.idempotency_key: r for r in records}
    for row in actions:
        record = by_key[row["idempotency_key"]]
        assert row["kind"] == record.kind
        assert row["developer_id"] == record.user_id
        assert row["email"] == record.email
        assert row["account_domain"] == (account_domain(record.account_domain, record.email) or "")
        assert (Decimal(row["cost_usd"]) if row["cost_usd"] else None) == record.cost_usd
        if record.kind == "meter":
            assert Decimal(row["quantity"]) == record.quantity
        if record.kind == "event":
            assert row["event_family"] == record.event_family
    # free-mail is never an account; the span's domain and the IDN are normalised
    domains = {row["account_domain"] for row in actions}
    assert "gmail.com" not in domains and "mailinator.com" not in domains
    assert {"acme.com", "globex.example", "initech.io", "xn--bcher-kva.example"} <= domains
    assert all(row["account_domain"] == "" for row in actions if row["email"] == "cy@gmail.com")
    # spreadsheet safety survives the round trip: the formula is text, the quoted name whole
    names = {row["event_name"] for row in actions}
    assert "'=HYPERLINK(\"http://x\")" in names and not any(n.startswith("=") for n in names)
    assert {row["product_name"] for row in actions} >= {"Widget, \"Pro\"\nedition", "'-Gadget"}
    assert {row["source"] for row in actions if row["kind"] == "event"} == {"'@web"}
    # accounts: totals equal the store's
    expected = expected_accounts(records)
    accounts = {row["account_domain"]: row for row in read_csv(out / "accounts.csv")}
    assert set(accounts) == set(expected)
    for domain, want in expected.items():
        row = accounts[domain]
        assert row["developers"] == str(len(want["devs"]))
        assert row["llm_calls"] == str(want["llm"])
        assert row["tokens"] == str(want["tokens"])
        assert Decimal(row["cost_usd"]) == want["cost"]
        assert [row[f"events_{f}"] for f in FAMILIES] == [str(want["families"][f]) for f in FAMILIES]
        assert row["first_seen"] == _rfc3339(min(want["times"]))
        assert row["last_seen"] == _rfc3339(max(want["times"]))
    assert sum(int(r["llm_calls"]) for r in accounts.values()) == sum(
        1 for r in records if r.kind == "llm" and account_domain(r.account_domain, r.email))

    # `spanmeter export csv` writes the same rows as the exporter, from the store's pages
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(f"storage:\n  sqlite:\n    path: {tmp_path / 'spanmeter.db'}\n")
    every_kind = ["--record-kind", "event", "--record-kind", "llm", "--record-kind", "meter"]
    for kind, extra in (("actions", [*every_kind, "--jobs", "1"]), ("actions", [*every_kind, "--jobs", "2"]),
                        ("accounts", [])):
        target = tmp_path / f"cli-{kind}.csv"
        result = CliRunner().invoke(main, ["export", "csv", "-c", str(config_file), "--kind", kind,
                                           "--out", str(target), *extra])
        assert result.exit_code == 0, result.output
        assert f"wrote {len(read_csv(out / f'{kind}.csv'))} {kind} rows" in result.output
        assert target.read_bytes() == (out / f"{kind}.csv").read_bytes()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child of init is reaped at once, but not always before we look)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _rfc3339(ns: int) -> str:
    from spanmeter.record import format_ns

    return format_ns(ns)


def test_export_to_standard_output_filters_and_templates(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with running_collector(config) as collector:
        export(collector.http_url, mixed_spans(12))
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(f"storage:\n  sqlite:\n    path: {tmp_path / 'spanmeter.db'}\n")
    result = CliRunner().invoke(main, ["export", "csv", "-c", str(config_file), "--template", "salesforce",
                                       "--no-email", "--bom", "--until", "2025-11-23T12:13:25Z"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("\ufeffOccurred_At__c,Account_Domain__c,Developer_Id__c,Usage_Kind__c")
    rows = list(csv.DictReader(text.removeprefix("\ufeff").splitlines()))
    assert rows and all(row["Occurred_At__c"] < "2025-11-23T12:13:25.000Z" for row in rows)
    assert all(row["Usage_Kind__c"] == "event" for row in rows)  # the default: product events only
    assert "wrote" in result.stderr and "standard output" in result.stderr
    bad = CliRunner().invoke(main, ["export", "csv", "-c", str(config_file), "--exporter", "csv/none"])
    assert bad.exit_code == 2 and "no csv exporter 'csv/none'" in bad.output


def test_a_file_not_written_by_the_exporter_pauses_it_with_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "crm"
    out.mkdir()
    (out / "actions.csv").write_text("someone,else's\n")
    config = make_config(tmp_path, exporters={EXPORTER: csv_settings(out, accounts_interval=0)},
                         service={"pipelines": {"usage": {"exporters": [EXPORTER]}}})
    with running_collector(config) as collector:
        export(collector.http_url, mixed_spans(3))
        wait_for(lambda: collector.metric("spanmeter_export_failures_total", {"exporter": EXPORTER}) >= 1,
                 what="a failed attempt")
        state = next(s for s in collector.collector.store.exporter_states() if s.exporter == EXPORTER)
    assert state.last_error is not None and "was not written by this exporter" in state.last_error
    assert "move it away" in state.last_error
    assert (out / "actions.csv").read_text() == "someone,else's\n"  # left alone


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from spanmeter.config import parse_config
    from spanmeter.errors import ConfigError

    def error(settings: dict[str, Any]) -> str:
        raw = {"exporters": {EXPORTER: {"directory": str(tmp_path), **settings}}}
        try:
            parse_config(raw, {})
        except ConfigError as e:
            return str(e)
        raise AssertionError("accepted")

    assert "unknown actions field(s) company" in error({"columns": {"actions": {"company": "Company"}}})
    assert "generic" in error({"template": "zoho"})
    assert "action_kinds" in error({"action_kinds": []})


async def write_records(db: Path, count: int) -> None:
    """`count` LLM records of 50 accounts, written through the store's writer (no OTLP: fast)."""
    store = SQLiteStore(db)
    await store.start()
    try:
        for first in range(0, count, 10_000):
            await store.write([
                UsageRecord(idempotency_key=f"k{i}", kind="llm", type="chat", occurred_at=T0 + i, id=new_record_id(),
                            user_id=f"u{i % 500}", email=f"u{i % 500}@c{i % 50}.example", input_tokens=i,
                            cost_usd=Decimal(i) / 10**6, cost_source="computed")
                for i in range(first, min(count, first + 10_000))
            ])
    finally:
        await store.close()


# --- kill -9 ------------------------------------------------------------------------------------
def _wait_file(path: Path, condition: Callable[[Path], bool], seconds: float = 60.0) -> None:
    wait_for(lambda: path.exists() and condition(path), seconds, what=str(path))


def test_kill_9_while_appending_loses_and_repeats_no_row(tmp_path: Path) -> None:
    out = tmp_path / "crm"
    port = free_port()
    exporters = {EXPORTER: {**csv_settings(out, accounts_interval=0), "max_batch": 5}}
    service = {"pipelines": {"usage": {"exporters": [EXPORTER]}}}
    log = (tmp_path / "serve.log").open("ab")
    proc: subprocess.Popen[bytes] | None = None
    count = 300
    try:
        proc = start_server(tmp_path, port, service=service, exporters=exporters, stderr=log.fileno())
        export(f"http://127.0.0.1:{port}", mixed_spans(count))
        _wait_file(out / "actions.csv", lambda p: p.stat().st_size > 4_000)  # batches of 5: mid-way
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        rows_then = len(read_csv(out / "actions.csv"))
        assert rows_then < count, "killed after the last batch: nothing was tested"
        proc = start_server(tmp_path, port, service=service, exporters=exporters, stderr=log.fileno())
        _wait_file(out / "actions.csv", lambda p: len(read_csv(p)) >= count)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        log.close()
    keys = [row["idempotency_key"] for row in read_csv(out / "actions.csv")]
    assert len(keys) == len(set(keys)) == count
    assert keys == [r.idempotency_key for r in stored(tmp_path / "crash.db")]  # storage order


def test_kill_9_mid_export_or_mid_rewrite_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    # A store big enough that an export takes a moment: written through the store's writer.
    db = tmp_path / "crash.db"
    asyncio.run(write_records(db, 60_000))
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(f"storage:\n  sqlite:\n    path: {db}\n")
    target = tmp_path / "out.csv"
    target.write_bytes(b"previous,file\r\n1,2\r\n")
    proc = subprocess.Popen([sys.executable, "-m", "spanmeter", "export", "csv", "-c", str(config_file),
                             "--record-kind", "llm", "--jobs", "2", "--out", str(target)], stderr=subprocess.PIPE)
    temp = tmp_path / f".out.csv.{proc.pid}.tmp"
    wait_for(lambda: temp.exists() and temp.stat().st_size > 0 or proc.poll() is not None, what="the export")
    helpers = _children(proc.pid)  # --jobs 2: the process writing the second share
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL, "the export finished before the kill: nothing was tested"
    assert target.read_bytes() == b"previous,file\r\n1,2\r\n"
    assert helpers, "no process wrote a share: nothing was tested"
    wait_for(lambda: not any(_running(pid) for pid in helpers), what="the share's process to stop")
    again = CliRunner().invoke(main, ["export", "csv", "-c", str(config_file), "--kind", "accounts",
                                      "--out", str(target)])
    assert again.exit_code == 0, again.output
    assert not temp.exists()  # the killed export's temporary file is cleaned up
    assert len(read_csv(target)) == 50  # the 50 accounts of the records

    # The exporter's rewrite of accounts.csv, killed with the whole `spanmeter serve`.
    out = tmp_path / "crm"
    out.mkdir()
    (out / "accounts.csv").write_bytes(b"account_domain\r\nold.example\r\n")
    port = free_port()
    exporters = {EXPORTER: {**csv_settings(out), "accounts_interval": 3600}}
    service = {"pipelines": {"usage": {"exporters": [EXPORTER]}}}
    server = start_server(tmp_path, port, service=service, exporters=exporters, stderr=subprocess.DEVNULL)
    try:
        # It rebuilds at its first batch: from 60,000 records.
        wait_for(lambda: any(p.name.startswith(".accounts.csv.") and p.name.endswith(".tmp") for p in out.iterdir())
                 or server.poll() is not None, what="the rewrite")
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    # the old file, or (renamed in the instant before the kill) the whole new one: never a part
    now = (out / "accounts.csv").read_bytes()
    if now != b"account_domain\r\nold.example\r\n":
        assert len(read_csv(out / "accounts.csv")) == 50 and now.endswith(b"\r\n")
