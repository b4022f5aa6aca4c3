#!/usr/bin/env python
"""Ingest benchmark: spanmeter vs the bare-minimum receiver, side by side, on the same requests.

    python bench/ingest.py [--quick] [--json FILE] [--concurrency 4] [--profile DIR] ...

For each case (gRPC / HTTP protobuf × 1 / 512 spans per request) the same pre-serialised
requests of real-shaped GenAI spans (bench/otlpgen.py) go to:
  - spanmeter: `spanmeter serve -c <tmp config>` on free 127.0.0.1 ports, a fresh SQLite file;
  - bare: bench/baseline.py --mode bare (parse, extract the GenAI attributes, INSERT OR IGNORE);
  - noop: bench/baseline.py --mode noop (parse only)  [and `extract` if asked for].
Each receiver is a separate process pinned to one core; this load generator is pinned to the
other. A warm-up prefix of the requests is sent untimed, then the rest with `--concurrency`
requests in flight. Every run is bounded by its request count and `--max-seconds`.
After each run the server's peak RSS (VmHWM) is read, the server is stopped with SIGTERM and its
SQLite file is checked: rows == unique spans sent (and, for spanmeter, every successful call priced).
See bench/README.md for what the columns mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen
import otlpgen
import profile_top

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The CPUs this benchmark may use, read before it pins itself to the load generator's: a child
# inherits its parent's affinity, so an unpinned server (and PostgreSQL) is given these back.
ALL_CPUS: frozenset[int] | None = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
_RUN_NUMBER = itertools.count()


# --- machine, pinning ---------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def plan_cpus(server_cpu: int | None, client_cpu: int | None) -> tuple[int | None, int | None]:
    """Pin this process (the client) to one CPU and return the CPU for the servers."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(available) < 2:
        print(
            f"note: only {len(available)} CPU available; no pinning, client and server share it",
            file=sys.stderr,
        )
        return None, None
    server = available[0] if server_cpu is None else server_cpu
    client = next(c for c in available if c != server) if client_cpu is None else client_cpu
    os.sched_setaffinity(0, {client})
    return (None if server == -1 else server), client


def spanmeter_version() -> str:
    """The package version and the git commit of the tree the editable install runs (with '+dirty')."""
    try:
        import spanmeter

        version = spanmeter.__version__
        source = Path(spanmeter.__file__).resolve().parent
    except ImportError:
        return "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return f"{version} ({commit}{'+dirty' if dirty else ''}, {source})"
    except (OSError, subprocess.CalledProcessError):
        return f"{version} ({source})"


@contextlib.contextmanager
def all_cpus() -> Iterator[None]:
    """Run the block with this process's affinity widened to every CPU (for the children it starts)."""
    if ALL_CPUS is None:
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


# --- server processes ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spanmeter_command() -> list[str]:
    script = Path(sys.executable).parent / "spanmeter"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from spanmeter.cli import main; sys.exit(main())"]


@dataclass
class Server:
    name: str
    argv: list[str]
    workdir: Path
    grpc_port: int
    http_port: int
    cpu: int | None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - closed with the process
        cpu = self.cpu

        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            elif ALL_CPUS is not None:  # unpinned: every CPU, not the load generator's it inherits
                os.sched_setaffinity(0, ALL_CPUS)

        self.process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,  # noqa: PLW1509 - only sets the CPU affinity
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        pending = {self.grpc_port, self.http_port}
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.log_tail()}")
            for port in tuple(pending):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU time by kind of thread: `main` (the event loop: HTTP and gRPC handling, converting,
        pricing), `python` (the other Python threads: the store's writer, mostly; they have the
        process's name) and `native` (threads of C libraries, gRPC's, which name theirs)."""
        out = {"main": 0.0, "python": 0.0, "native": 0.0}
        main_name = Path(f"/proc/{self.pid}/comm").read_text()
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                stat = (task / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                name = (task / "comm").read_text()
                kind = "main" if task.name == str(self.pid) else "python" if name == main_name else "native"
                out[kind] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return out

    def stop(self, timeout: float = 60) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def make_server(
    receiver: str, workdir: Path, cpu: int | None, http_baseline: str, webhook: str | None = None,
    spanmeter_loop: str = "auto", baseline_loop: str = "asyncio", pg_dsn: str | None = None,
    rest_exporters: bool = False,
) -> Server:
    """`webhook`: the URL spanmeter's webhook exporter sends every stored record to; `pg_dsn`:
    spanmeter stores into this PostgreSQL database instead of a fresh SQLite file;
    `rest_exporters`: the tokens&, LLMtrack, Fluxrate and Spryngtime exporters send every record
    too, to the same sink under the webhook run's prefix."""
    workdir.mkdir(parents=True)
    grpc_port, http_port = free_port(), free_port()
    if receiver == "spanmeter":
        config = workdir / "spanmeter.yaml"
        service: list[str] = []
        text = (
            "receivers:\n  otlp:\n    protocols:\n"
            f'      grpc: {{endpoint: "127.0.0.1:{grpc_port}"}}\n'
            f'      http: {{endpoint: "127.0.0.1:{http_port}"}}\n'
            + (f'storage:\n  postgres: {{dsn: "{pg_dsn}"}}\n' if pg_dsn
               else f'storage:\n  sqlite: {{path: "{workdir / "spanmeter.db"}"}}\n')
        )
        if webhook:
            text += (
                f"exporters:\n  webhook/bench:\n    endpoint: {webhook}\n    secret: whsec_{'A' * 44}\n"
                "    max_batch: 100\n    flush_interval: 1.0\n"  # the defaults
            )
            names = ["webhook/bench"]
            if rest_exporters:
                run = webhook.rpartition("/")[2]
                base = f"{webhook.partition('/hooks/')[0]}/{run}"
                text += (
                    f"  tokensand/bench:\n    endpoint: {base}\n    api_key: tk_live_bench\n    llm: {{send: true}}\n"
                    f"  llmtrack/bench:\n    endpoint: {base}\n    api_key: lt_bench\n"
                    f"  fluxrate/bench:\n    endpoint: {base}\n    api_key: org_live_bench\n"
                    "    meter_tokens: {chat: 0b8f5a3e-2c4d-4e8f-9a1b-7c6d5e4f3a2b}\n"
                    f"  spryngtime/bench:\n    endpoint: {base}/spryngtime\n    api_key: st_bench\n"
                )
                names += ["tokensand/bench", "llmtrack/bench", "fluxrate/bench", "spryngtime/bench"]
            service.append(f"  pipelines:\n    usage:\n      exporters: [{', '.join(names)}]\n")
        if spanmeter_loop != "auto":  # the default: trees older than the key run too
            service.append(f"  event_loop: {spanmeter_loop}\n")
        config.write_text(text + ("service:\n" + "".join(service) if service else ""))
        argv = [*spanmeter_command(), "serve", "-c", str(config)]
    else:
        argv = [
            sys.executable,
            str(HERE / "baseline.py"),
            "--mode",
            receiver,
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--db",
            str(workdir / "baseline.db"),
            "--http-server",
            http_baseline,
            "--loop",
            baseline_loop,
        ]
    return Server(receiver, argv, workdir, grpc_port, http_port, cpu)


@contextlib.contextmanager
def postgres_databases(dsn: str | None) -> Iterator[Callable[[], str]]:
    """A maker of fresh PostgreSQL schemas (a DSN each): on `dsn`, else on a throwaway server
    (tests/postgres_server.py: initdb + pg_ctl, stopped at the end)."""
    import uuid

    import psycopg

    sys.path.insert(0, str(HERE.parent))
    from tests.postgres_server import postgres_server

    with contextlib.ExitStack() as stack:
        if dsn is None:
            with all_cpus():  # the server's processes inherit this affinity: not the load generator's CPU alone
                dsn = stack.enter_context(postgres_server()).dsn()
        base = dsn

        def new() -> str:
            name = f"bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{name}"')
            return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"

        yield new


def busy_cpu_seconds() -> float:
    """CPU time spent by everything on the machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def postgres_cpu_seconds(dsn: str) -> float | None:
    """CPU time of the PostgreSQL server on this machine (its postmaster and every process it
    started), found from a backend's parent; None when the server runs elsewhere."""
    import psycopg

    with psycopg.connect(dsn) as pg:
        row = pg.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    try:
        postmaster = Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None
    total = 0.0
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if proc.name == postmaster or fields[1] == postmaster:
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def count_rows(receiver: str, workdir: Path, pg_dsn: str | None = None) -> tuple[int | None, int | None]:
    """(rows, priced rows) in the receiver's database after it stopped; None where not applicable."""
    if receiver == "spanmeter" and pg_dsn:
        import psycopg

        with psycopg.connect(pg_dsn) as pg:
            found = pg.execute("SELECT count(*), count(cost_usd_nano) FROM records").fetchone()
        assert found is not None
        return found[0], found[1]
    if receiver == "spanmeter":
        with sqlite3.connect(workdir / "spanmeter.db") as conn:
            rows, priced = conn.execute("SELECT count(*), count(cost_usd_nano) FROM records").fetchone()
        return rows, priced
    if receiver == "bare":
        with sqlite3.connect(workdir / "baseline.db") as conn:
            return conn.execute("SELECT count(*) FROM spans").fetchone()[0], None
    return None, None


# --- one run ------------------------------------------------------------------------------------
@dataclass
class Case:
    transport: str
    batch: int
    warmup: int
    requests: int
    bodies: list[bytes]


async def run_one(
    receiver: str,
    case: Case,
    pool: otlpgen.SpanPool,
    args: argparse.Namespace,
    tmp: Path,
    rate: float | None = None,
) -> dict[str, Any]:
    """One server, one load: paced at `rate` requests/s when given, else as fast as answered."""
    workdir = tmp / f"{case.transport}-{case.batch}-{receiver}"
    webhook = None
    if args.webhook and receiver == "spanmeter":
        # one count per run at the sink: the path is unique across the whole bench (--half-rate's
        # maximum runs and its paced runs have the same case and repeat names)
        webhook = f"http://127.0.0.1:{args.sink_port}/hooks/{os.getpid()}-{next(_RUN_NUMBER)}"
    pg_dsn = args.new_pg_database() if args.store == "postgres" and receiver == "spanmeter" else None
    count = args.instances if pg_dsn else 1
    # Instances beside the first run unpinned: with 2 CPUs there is no core of their own to give.
    servers = [
        make_server(
            receiver, workdir if i == 0 else workdir.with_name(f"{workdir.name}-{i}"),
            args.server_cpu if count == 1 else None, args.http_baseline, webhook, args.spanmeter_loop,
            args.baseline_loop, pg_dsn, args.rest_exporters,
        )
        for i in range(count)
    ]
    for one in servers:
        one.start()
    server = servers[0]
    profiler: subprocess.Popen[bytes] | None = None
    profile_path: Path | None = None
    marks: dict[str, float] = {}
    threads0: list[dict[str, float]] = []  # each server's CPU by kind of thread, when measuring starts

    def measure_start() -> None:
        nonlocal profiler, profile_path
        marks["cpu0"] = sum(one.cpu_seconds() for one in servers)
        if pg_dsn:
            threads0[:] = [one.thread_cpu_seconds() for one in servers]
            marks["pg0"] = postgres_cpu_seconds(pg_dsn) or 0.0
        marks["busy0"] = busy_cpu_seconds()
        if args.profile and receiver == "spanmeter":
            profile_path = args.profile / f"spanmeter-{case.transport}-{case.batch}.txt"
            client_cpu = args.client_cpu
            profiler = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.pid), "--rate", "250",
                 "--format", "raw", "--threads", "--output", str(profile_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                preexec_fn=(lambda: os.sched_setaffinity(0, {client_cpu})) if client_cpu is not None else None,  # noqa: PLW1509
            )  # fmt: skip

    try:
        async with contextlib.AsyncExitStack() as clients:
            sends = [
                (await clients.enter_async_context(
                    loadgen.GrpcClient(f"127.0.0.1:{one.grpc_port}") if case.transport == "grpc"
                    else loadgen.HttpClient("127.0.0.1", one.http_port)
                )).send
                for one in servers
            ]
            turns = itertools.cycle(sends)  # requests go to the instances in turn

            def send(body: bytes) -> Any:
                return next(turns)(body)

            load = await loadgen.drive(
                send,
                case.bodies,
                case.warmup,
                args.concurrency,
                args.max_seconds,
                measure_start,
                rate,
            )
        server_cpu = sum(one.cpu_seconds() for one in servers) - marks["cpu0"]
        # PostgreSQL: the servers' CPU by kind of thread (the writer's apart), and the database's
        threads: dict[str, float] = {}
        for before, one in zip(threads0, servers, strict=True) if pg_dsn else ():
            for kind, seconds in one.thread_cpu_seconds().items():
                threads[kind] = threads.get(kind, 0.0) + seconds - before[kind]
        pg_total = postgres_cpu_seconds(pg_dsn) if pg_dsn else None
        pg_cpu = pg_total - marks["pg0"] if pg_total is not None else None
        other_cpu = busy_cpu_seconds() - marks["busy0"] - server_cpu - load.client_cpu_s
        if webhook is not None:
            sent = (case.warmup + load.sent) * case.batch
            # Fluxrate gets only records with a quantity: a failed call has no tokens (skipped).
            with_tokens = sum(1 for failed in pool.failed[:sent] if not failed)
            expected_by_service = {name: with_tokens if name == "fluxrate" else sent for name in REST_SERVICES}
            exported = await wait_for_export(webhook, sent, expected_by_service if args.rest_exporters else {})
        rss = max(one.peak_rss_mb() for one in servers)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(60)
            except subprocess.TimeoutExpired:
                profiler.kill()
        exit_code = server.stop()
        for other in servers[1:]:
            exit_code = exit_code or other.stop()
    attempted = case.warmup + load.sent
    expected_rows = attempted * case.batch if load.ok == load.sent and load.warmup_ok == case.warmup else None
    expected_priced = sum(1 for failed in pool.failed[: attempted * case.batch] if not failed)
    rows, priced = count_rows(receiver, server.workdir, pg_dsn)
    spans = load.sent * case.batch
    result: dict[str, Any] = {
        "transport": case.transport,
        "batch": case.batch,
        "receiver": receiver if count == 1 and not pg_dsn else f"{receiver} pg x{count}",
        "requests": load.sent,
        "spans": spans,
        "seconds": round(load.elapsed, 3),
        "spans_per_s": round(spans / load.elapsed, 1) if load.elapsed else 0.0,
        "requests_per_s": round(load.sent / load.elapsed, 1) if load.elapsed else 0.0,
        "p50_ms": round(load.percentile(50), 3),
        "p99_ms": round(load.percentile(99), 3),
        "peak_rss_mb": round(rss, 1),
        "server_cpu_pct": round(100 * server_cpu / load.elapsed, 1) if load.elapsed else 0.0,
        "client_cpu_pct": round(100 * load.client_cpu_s / load.elapsed, 1) if load.elapsed else 0.0,
        "other_cpu_pct": round(max(0.0, 100 * other_cpu / load.elapsed), 1) if load.elapsed else 0.0,
        "paced_requests_per_s": rate,
        "cpu_us_per_span": {
            "server": round(1e6 * server_cpu / spans, 1) if spans else None,
            **{f"{kind}_threads": round(1e6 * seconds / spans, 1) if spans else None for kind, seconds in threads.items()},
            "postgres": round(1e6 * pg_cpu / spans, 1) if spans and pg_cpu is not None else None,
            "client": round(1e6 * load.client_cpu_s / spans, 1) if spans else None,
        },
        "errors": dict(load.errors),
        "non_empty_responses": load.non_empty_responses,
        "timed_out": load.timed_out,
        "exit_code": exit_code,
        "rows": rows,
        "expected_rows": expected_rows if rows is not None else None,
        "rows_ok": None if rows is None else rows == expected_rows,
        # spans/s over each tenth of the measured requests, in the order they were answered, and
        # the rows in the database when that tenth ended: does the rate hold as the table grows?
        "tenths": _tenths(load.done_s, case.batch, case.warmup * case.batch),
        # the 10 slowest requests: (seconds into the measured phase when answered, latency ms)
        "slowest": sorted(zip(load.done_s, load.latencies_ms, strict=True), key=lambda x: -x[1])[:10],
    }
    if webhook is not None:
        result.update(exported)
        result["exported_ok"] = exported["exported"] == exported["exported_unique"] == rows and all(
            exported["services"].get(name) == count for name, count in exported["expected_services"].items()
        )
    if receiver == "spanmeter":
        result["priced"] = priced
        result["expected_priced"] = expected_priced
        result["priced_ok"] = priced == expected_priced
    if profile_path is not None:
        result["profile"] = str(profile_path)
    if exit_code != 0:
        print(f"warning: {receiver} exited with {exit_code}:\n{server.log_tail()}", file=sys.stderr)
    return result


REST_SERVICES = ("tokensand", "llmtrack", "fluxrate", "spryngtime")


async def wait_for_export(
    url: str, expected: int, services: dict[str, int], limit_s: float = 300.0
) -> dict[str, Any]:
    """After the load: wait until the webhook sink has every record, and each REST service in
    `services` its expected count (or `limit_s`). `drain_s` is the time the exporters needed after the last
    request was answered: how far they lagged behind."""
    count_url = url.replace("/hooks/", "/count/")
    started = time.perf_counter()
    async with httpx.AsyncClient() as client:
        while True:
            counts = (await client.get(count_url)).json()
            done = counts["records"] >= expected and all(counts["services"].get(n, 0) >= c for n, c in services.items())
            if done or time.perf_counter() - started > limit_s:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # and nothing more arrives (a duplicate would)
    async with httpx.AsyncClient() as client:
        counts = (await client.get(count_url)).json()
    return {"exported": counts["records"], "exported_unique": counts["unique"], "services": counts["services"], "expected_services": services,
            "drain_s": round(time.perf_counter() - started - 0.5, 2)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median spans/s (the lower middle one for an even count), all runs' rates attached.
    Paced runs all have the rate they were given: for them the median is by p99 latency."""
    key = "p99_ms" if runs[0].get("paced_requests_per_s") else "spans_per_s"
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["all_spans_per_s"] = [r["spans_per_s"] for r in runs]
        chosen["all_p99_ms"] = [r["p99_ms"] for r in runs]
        chosen["rows_ok"] = None if chosen["rows"] is None else all(r["rows_ok"] for r in runs)
        chosen["priced_ok"] = all(r.get("priced_ok", True) for r in runs)
        if "exported_ok" in chosen:
            chosen["exported_ok"] = all(r["exported_ok"] for r in runs)
            chosen["all_drain_s"] = [r["drain_s"] for r in runs]
        chosen["errors"] = {k: v for r in runs for k, v in r["errors"].items()}
    return chosen


# --- output -------------------------------------------------------------------------------------
def _check(r: dict[str, Any]) -> str:
    if r["rows"] is None:
        return "-"
    ok = r["rows_ok"] and r.get("priced_ok", True) and r.get("exported_ok", True) and not r["errors"]
    text = f"{r['rows']} {'ok' if ok else 'MISMATCH'}"
    if "exported" in r:
        text += f", exported {r['exported']} (drained {r['drain_s']:.1f} s after the load)"
        if r.get("services"):
            text += " and " + ", ".join(f"{n} {c}" for n, c in sorted(r["services"].items()))
    if r["errors"]:
        text += f" errors={r['errors']}"
    return text


def _tenths(done_s: list[float], batch: int, rows_before: int) -> list[dict[str, float]]:
    done = sorted(done_s)
    if len(done) < 20:
        return []
    out, start_t, start_i = [], 0.0, 0
    for k in range(1, 11):
        end_i = len(done) * k // 10
        seconds = done[end_i - 1] - start_t
        out.append({"rows": rows_before + end_i * batch, "spans_per_s": round((end_i - start_i) * batch / seconds, 1)})
        start_t, start_i = done[end_i - 1], end_i
    return out


def print_tenths(results: list[dict[str, Any]]) -> None:
    """The rate per tenth of the run, and the ratio to bare over the same requests."""
    bare = next((r for r in results if r["receiver"] == "bare" and r.get("tenths")), None)
    print("  rate by tenth of the run (rows in the database at its end: spans/s, ratio to bare):")
    for r in results:
        if not r.get("tenths") or r["receiver"] == "noop":
            continue
        cells = []
        for i, t in enumerate(r["tenths"]):
            cell = f"{t['rows'] / 1000:,.0f}k: {t['spans_per_s']:,.0f}"
            if bare is not None and r is not bare and len(bare["tenths"]) == len(r["tenths"]):
                cell += f" ({t['spans_per_s'] / bare['tenths'][i]['spans_per_s']:.2f}x)"
            cells.append(cell)
        print(f"  {r['receiver']:<10} " + " | ".join(cells))


def print_case(results: list[dict[str, Any]]) -> None:
    bare = next((r for r in results if r["receiver"] == "bare"), None)
    head = f"{'receiver':<10} {'spans/s':>10} {'vs bare':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7} {'srv CPU':>7} {'cli CPU':>7} {'other':>6}  rows"
    first = results[0]
    runs = len(first.get("all_spans_per_s", [0]))
    print(
        f"\n{first['transport']} protobuf, {first['batch']} span(s)/request, {first['requests']} requests measured"
        + (f", median of {runs} runs" if runs > 1 else "")
        + (f" (by p99), paced at {first['paced_requests_per_s']:.1f} requests/s" if first.get("paced_requests_per_s") else "")
    )
    print(head)
    for r in results:
        ratio = f"{r['spans_per_s'] / bare['spans_per_s']:.2f}x" if bare and bare["spans_per_s"] else "-"
        print(
            f"{r['receiver']:<10} {r['spans_per_s']:>10,.0f} {ratio:>8} {r['requests_per_s']:>9,.0f} {r['p50_ms']:>8.2f}"
            f" {r['p99_ms']:>8.2f} {r['peak_rss_mb']:>7.0f} {r['server_cpu_pct']:>6.0f}% {r['client_cpu_pct']:>6.0f}% {r['other_cpu_pct']:>5.0f}%  {_check(r)}"
            + ("  (hit --max-seconds)" if r["timed_out"] else "")
            + (f"  p99 of each run: {', '.join(f'{p:.1f}' for p in r['all_p99_ms'])}" if "all_p99_ms" in r else "")
        )
        if (cpu := r.get("cpu_us_per_span", {})).get("main_threads") is not None:  # PostgreSQL runs
            database = "not here" if cpu["postgres"] is None else f"{cpu['postgres']:,.0f}"
            print(
                f"{'':<10} CPU µs/span: servers {cpu['server']:,.0f} (main thread {cpu['main_threads']:,.0f},"
                f" other Python threads {cpu['python_threads']:,.0f}, native {cpu['native_threads']:,.0f}),"
                f" PostgreSQL {database}, load generator {cpu['client']:,.0f}"
            )
    sys.stdout.flush()


def print_summary(results: list[dict[str, Any]], cases: list[tuple[str, int]]) -> None:
    receivers = list(dict.fromkeys(r["receiver"] for r in results))
    header = (
        "| receiver | "
        + " | ".join(f"{'gRPC' if t == 'grpc' else 'HTTP protobuf'}, {b}" for t, b in cases)
        + " |"
    )
    print("\nspans/s (ratio to bare):")
    print(header)
    print("|---|" + "---:|" * len(cases))
    for receiver in receivers:
        cells = []
        for t, b in cases:
            r = next(
                (x for x in results if x["receiver"] == receiver and x["transport"] == t and x["batch"] == b),
                None,
            )
            bare = next(
                (x for x in results if x["receiver"] == "bare" and x["transport"] == t and x["batch"] == b),
                None,
            )
            if r is None:
                cells.append("-")
                continue
            cell = f"{r['spans_per_s']:,.0f}"
            if bare and receiver != "bare" and bare["spans_per_s"]:
                cell += f" ({r['spans_per_s'] / bare['spans_per_s']:.2f}x)"
            cells.append(cell)
        print(f"| {receiver} | " + " | ".join(cells) + " |")


# --- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: about 30 s in all")
    parser.add_argument("--transports", default="grpc,http", help="comma list of grpc,http (default both)")
    parser.add_argument("--batches", default="1,512", help="spans per request, comma list (default 1,512)")
    parser.add_argument(
        "--receivers",
        default="spanmeter,bare,noop",
        help="comma list of spanmeter,bare,extract,noop (default spanmeter,bare,noop)",
    )
    parser.add_argument(
        "--requests-1", type=int, help="measured requests per run at batch 1 (default 10000; quick 1500)"
    )
    parser.add_argument(
        "--requests-big", type=int, help="measured requests per run at batch > 1 (default 500; quick 50)"
    )
    parser.add_argument(
        "--warmup", type=float, default=0.05, help="warm-up requests, as a fraction of the measured ones"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per receiver and case; the median is shown"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument(
        "--rate",
        type=float,
        help="pace the measured phase at this many requests/s (default: as fast as answered)",
    )
    parser.add_argument(
        "--half-rate",
        action="store_true",
        help="first measure spanmeter's maximum rate in each case, then pace every run at half of it",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=90, help="cap on one run's measured phase (default 90)"
    )
    parser.add_argument(
        "--http-baseline", choices=("raw", "uvicorn"), default="raw", help="HTTP server of the baselines"
    )
    parser.add_argument(
        "--spanmeter-loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="spanmeter's service::event_loop (default auto: uvloop where installed)",
    )
    parser.add_argument(
        "--baseline-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="event loop of the baselines (default asyncio, the bare minimum as defined)",
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="spanmeter runs with a webhook exporter sending every record to bench/webhook_sink.py (on the load CPU)",
    )
    parser.add_argument(
        "--rest-exporters",
        action="store_true",
        help="with --webhook: the tokens&, LLMtrack, Fluxrate and Spryngtime exporters on too, sending to the same sink",
    )
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), default="sqlite",
        help="spanmeter's store (postgres: a throwaway server unless --pg-dsn; the baselines keep SQLite)",
    )
    parser.add_argument("--instances", type=int, default=1, help="spanmeter instances on the one PostgreSQL database")
    parser.add_argument("--pg-dsn", help="an existing PostgreSQL database (each run gets a schema of its own)")
    parser.add_argument("--server-cpu", type=int, help="CPU for the servers (default: the first available; -1: not pinned)")
    parser.add_argument("--client-cpu", type=int, help="CPU for the load generator (default: another one)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the spanmeter runs into this directory (perturbs them)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (databases, server logs)"
    )
    parser.add_argument(
        "--tenths", action="store_true", help="also print the rate per tenth of each run (does it hold as the table grows?)"
    )
    args = parser.parse_args(argv)
    if args.half_rate and args.rate:
        parser.error("--half-rate measures the rate itself: leave out --rate")
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.receivers = [r.strip() for r in args.receivers.split(",") if r.strip()]
    if args.instances > 1 and args.store != "postgres":
        parser.error("--instances > 1 needs --store postgres (one database shared by the instances)")
    for receiver in args.receivers:
        if receiver not in ("spanmeter", "bare", "extract", "noop"):
            parser.error(f"unknown receiver {receiver!r}")
    if args.requests_1 is None:
        args.requests_1 = 1500 if args.quick else 10000
    if args.requests_big is None:
        args.requests_big = 50 if args.quick else 500
    return args


def start_webhook_sink(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """bench/webhook_sink.py on the load generator's CPU (the exporter's own work stays on the server's)."""
    args.sink_port = free_port()
    client_cpu = args.client_cpu
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "webhook_sink.py"), "--port", str(args.sink_port)],
        preexec_fn=(lambda: os.sched_setaffinity(0, {client_cpu})) if client_cpu is not None else None,  # noqa: PLW1509
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", args.sink_port), 1).close()
            return sink
        except OSError:
            if time.monotonic() > deadline:
                sink.kill()
                raise RuntimeError("bench/webhook_sink.py did not start") from None
            time.sleep(0.05)


async def half_of_maximum(case: Case, pool: otlpgen.SpanPool, args: argparse.Namespace, tmp: Path) -> float:
    """Half of spanmeter's maximum rate in requests/s, measured now on this case (the issue's
    "p99 at half of the maximum rate", on whatever speed the machine has today)."""
    rates = []
    for repeat in range(args.repeat):
        result = await run_one("spanmeter", case, pool, args, tmp / f"r{repeat}")
        rates.append(result["requests_per_s"])
    rate = statistics.median(rates) / 2
    print(
        f"{case.transport}, {case.batch} span(s)/request: spanmeter's maximum "
        f"{statistics.median(rates):.1f} requests/s ({', '.join(f'{r:.1f}' for r in rates)}); "
        f"pacing every receiver at half: {rate:.1f} requests/s"
    )
    return rate


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    plan = [(t, b) for t in args.transports for b in args.batches]
    sizes = {b: (args.requests_1 if b == 1 else args.requests_big) for b in args.batches}
    warmups = {b: max(2, int(sizes[b] * args.warmup)) for b in args.batches}
    need = max((sizes[b] + warmups[b]) * b for b in args.batches)
    started = time.perf_counter()
    pool = otlpgen.make_spans(need)
    bodies = {}
    for b in args.batches:
        bodies[b] = otlpgen.make_requests(pool, 0, sizes[b] + warmups[b], b)
        otlpgen.check_request(bodies[b][0], b)
    mb = sum(len(x) for x in bodies[max(args.batches)]) / 1e6
    print(
        f"generated {need:,} spans in {time.perf_counter() - started:.1f}s; "
        f"requests: " + ", ".join(f"batch {b}: {warmups[b]} warm-up + {sizes[b]} measured" for b in args.batches)
        + f" ({mb:.0f} MB at batch {max(args.batches)})"
    )  # fmt: skip
    results: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="spanmeter-bench-")
    try:
        if args.keep:
            print(f"temp directory: {tmp}")
        for transport, batch in plan:
            case = Case(transport, batch, warmups[batch], sizes[batch], bodies[batch])
            rate = args.rate
            if args.half_rate:
                rate = await half_of_maximum(case, pool, args, Path(tmp) / "maximum")
            runs: dict[str, list[dict[str, Any]]] = {r: [] for r in args.receivers}
            for repeat in range(args.repeat):
                for receiver in args.receivers:  # interleaved, so drift hits every receiver alike
                    runs[receiver].append(await run_one(receiver, case, pool, args, Path(tmp) / f"r{repeat}", rate))
            case_results = [median_run(runs[r]) for r in args.receivers]
            print_case(case_results)
            if args.tenths:
                print_tenths(case_results)
            results += case_results
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_summary(results, plan)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.server_cpu, args.client_cpu = plan_cpus(args.server_cpu, args.client_cpu)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    machine = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "server_cpu": args.server_cpu,
        "spanmeter": spanmeter_version(),
        "client_cpu": args.client_cpu,
    }
    print(f"spanmeter: {machine['spanmeter']}")
    print(
        f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}; "
        f"servers on CPU {args.server_cpu}, load generator on CPU {args.client_cpu}; concurrency {args.concurrency}"
    )
    print(f"event loops: spanmeter {args.spanmeter_loop}, baselines {args.baseline_loop}")
    started = time.perf_counter()
    sink = start_webhook_sink(args) if args.webhook else None
    with contextlib.ExitStack() as stack:
        if args.store == "postgres":
            args.new_pg_database = stack.enter_context(postgres_databases(args.pg_dsn))
        try:
            results = asyncio.run(amain(args))
        finally:
            if sink is not None:
                sink.kill()
                sink.wait()
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")
    if args.profile:
        for r in results:
            if "profile" in r and Path(r["profile"]).exists():
                print()
                print(profile_top.summarise(Path(r["profile"]), 15))
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(
            json.dumps({"machine": machine, "settings": settings, "results": results}, indent=2)
        )
        print(f"results written to {args.json}")
    bad = [
        r for r in results
        if r["rows_ok"] is False or r.get("priced_ok") is False or r.get("exported_ok") is False or r["errors"]
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
