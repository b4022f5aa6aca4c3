#!/usr/bin/env python
"""Query benchmark: the usage query API over HTTP on a database of N real-shaped usage records.

    python bench/queries.py [--records 1000000 | --quick] [--db-dir DIR] [--calls 200] [--json FILE]

1. Builds (or reuses, from `--db-dir`) a SQLite database of N usage records through spanmeter's
   own write path: `SQLiteStore.start()` (its migrations, so the same schema, indexes and
   triggers) and `SQLiteStore.write()` with big batches of `UsageRecord`s (its writer thread,
   `INSERT OR IGNORE`, the record_meta trigger). Records are generated in occurred_at order
   (as they arrive) over ~120 days up to the build time, shaped like real usage: a skewed (Zipf)
   spread over ~2,000 customers of one big workspace plus smaller workspaces, mostly LLM calls
   (several providers and models, tokens, costs, conversations, users), product events and
   meter records, meta `plan` / `region` / `env`.
2. Runs `spanmeter serve -c <config>` on it (free 127.0.0.1 ports, auth off, the big workspace
   as `service::workspace`, adoption rate limit raised) pinned to one CPU; this client is pinned
   to the other. For each case: warm-up calls, then up to `--calls` calls over one keep-alive
   httpx connection (fewer when a case exceeds `--case-seconds`), p50 / p99 / max latency.
   The same query is also timed in this process straight on SQLite through the store's own
   query methods ("sql p50": what the database costs, without HTTP, FastAPI and JSON).
3. Compares with the goals of issues 5 and 20 (records page with a customer or meta filter p50 <= 10 ms,
   the 90-day series <= 100 ms; the aggregate of 30 days by customer x day <= 100 ms, adoption rows
   <= 50 ms) and prints EXPLAIN QUERY PLAN for every case over its bound.
See bench/README.md ("Query benchmark").
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import http.client
import json
import math
import os
import random
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import Server, cpu_model, free_port, plan_cpus, spanmeter_command, spanmeter_version
from scale_db import scale

from spanmeter.api.aggregate import render_bytes
from spanmeter.api.cursor import decode_cursor
from spanmeter.api.filters import time_ns as _ns
from spanmeter.api.usage import SERIES_DAYS
from spanmeter.encoding import item_text
from spanmeter.record import Product, UsageRecord, new_record_id
from spanmeter.store.aggregate import AggregateQuery
from spanmeter.store.constants import DAY_NS
from spanmeter.store.queries import EQUALITY_FILTERS, RecordQuery
from spanmeter.store.sqlite import SQLiteStore, migrations

GENERATOR_VERSION = 1  # bump when the generated data changes shape (invalidates cached databases)
DAYS = 120
BATCH = 50_000
SCALE_BASE = 1_000_000  # larger databases are copies of this one (bench/scale_db.py) unless --generate
BIG_WORKSPACE = "acme"
# (workspace, share of records, customers)
WORKSPACES = (
    ("acme", 0.82, 2000),
    ("globex", 0.10, 300),
    ("initech", 0.05, 150),
    ("umbrella", 0.02, 60),
    ("hooli", 0.01, 30),
)
ZIPF_S = 1.07
# (provider, request model, response model, operation, share of LLM records, $/Mtok in, $/Mtok out)
MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chat", 0.33, "0.15", "0.60"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", "chat", 0.14, "2.50", "10"),
    ("openai", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "chat", 0.12, "0.40", "1.60"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "chat", 0.15, "3", "15"),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "chat", 0.10, "1", "5"),
    ("google", "gemini-2.0-flash", "gemini-2.0-flash-001", "chat", 0.08, "0.10", "0.40"),
    ("openai", "text-embedding-3-small", "text-embedding-3-small", "embeddings", 0.077, "0.02", "0"),
    ("mistral", "mistral-large-latest", "mistral-large-2411", "chat", 0.003, "2", "6"),  # a rare model
)
EVENTS = (  # (event name, family, share of event records)
    ("page_view", "intent", 0.30),
    ("docs_read", "evaluation", 0.20),
    ("project_created", "activation", 0.15),
    ("feature_used", "retention", 0.20),
    ("seat_added", "expansion", 0.08),
    ("invite_sent", "expansion", 0.05),
    ("plan_upgraded", "commercial", 0.02),
)
METERS = (("api_calls", 0.6), ("storage_gb_hours", 0.3), ("seats", 0.1))
PRODUCTS = tuple(
    (f"prod_{i:02d}", f"product-{i:02d}", cat)
    for i, cat in enumerate(
        ["agent-framework"] * 10 + ["vector-db"] * 8 + ["observability"] * 6 + ["eval"] * 6
    )
)
FEATURES = ("chat", "search", "summarize", "agent", "extract")


# --- the data -----------------------------------------------------------------------------------
@dataclass
class Customer:
    id: str
    plan: str
    region: str
    users: int
    share: float  # of its workspace's records


@dataclass
class Shape:
    """Everything random about the data set that the benchmark later queries by name."""

    end_ns: int
    customers: dict[str, list[Customer]] = field(default_factory=dict)

    @property
    def start_ns(self) -> int:
        return self.end_ns - DAYS * DAY_NS


def make_customers(seed: int) -> dict[str, list[Customer]]:
    rng = random.Random(seed * 7919 + 1)
    out: dict[str, list[Customer]] = {}
    for ws, _share, count in WORKSPACES:
        weights = [1 / (k**ZIPF_S) for k in range(1, count + 1)]
        total = sum(weights)
        customers = []
        for rank, weight in enumerate(weights):
            share = weight / total
            big = rank < count // 100 + 5
            plan = rng.choices(("enterprise", "pro", "free"), (0.7, 0.3, 0.0) if big else (0.05, 0.35, 0.60))[
                0
            ]
            region = rng.choices(("us-east", "eu-west", "ap-south"), (0.55, 0.30, 0.15))[0]
            cid = f"cus_{rng.getrandbits(64):016x}"
            customers.append(Customer(cid, plan, region, max(1, min(400, int(share * 4000))), share))
        out[ws] = customers
    return out


def _cumulative(weights: list[float]) -> list[float]:
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return [x / acc for x in out]


def _rate_shape(t_days: float) -> float:
    """Relative arrival rate at day t of 120: growth from 1x to 2x, a weekly dip, a daily cycle."""
    growth = 1 + t_days / DAYS
    weekday = int(t_days) % 7
    weekly = 0.6 if weekday in (5, 6) else 1.0
    daily = 1 + 0.6 * math.sin(2 * math.pi * ((t_days % 1) - 0.3))
    return growth * weekly * daily


def generate(n: int, seed: int, shape: Shape) -> Any:
    """Yield lists of UsageRecord (BATCH each), in occurred_at order, n records in all."""
    rng = random.Random(seed)
    rand, getrandbits, expovariate, lognorm = rng.random, rng.getrandbits, rng.expovariate, rng.lognormvariate
    # Arrival process: exponential gaps at rate(t) scaled so that ~n records span the 120 days.
    steps = DAYS * 24 * 4
    integral = sum(_rate_shape((i + 0.5) / (steps / DAYS)) for i in range(steps)) * (DAY_NS * DAYS / steps)
    base = n / integral  # records per ns at relative rate 1
    ws_cum = _cumulative([s for _, s, _ in WORKSPACES])
    ws_names = [w for w, _, _ in WORKSPACES]
    cust_cum = {ws: _cumulative([c.share for c in shape.customers[ws]]) for ws in ws_names}
    model_cum = _cumulative([m[4] for m in MODELS])
    prices = [(Decimal(m[5]), Decimal(m[6])) for m in MODELS]
    event_cum = _cumulative([e[2] for e in EVENTS])
    meter_cum = _cumulative([m[1] for m in METERS])
    # expected records per 15-minute bucket per customer, to size conversations (~8 records each)
    per_bucket = {ws: n * s / (DAYS * 96) for ws, s, _ in WORKSPACES}
    t = float(shape.start_ns)
    end = shape.end_ns
    batch: list[UsageRecord] = []
    for i in range(n):
        t += expovariate(base * _rate_shape((t - shape.start_ns) / DAY_NS))
        occurred = min(int(t), end - 1_000_000 * (n - i))  # never past the end, kept in order
        ws = ws_names[bisect.bisect(ws_cum, rand())]
        customers = shape.customers[ws]
        ci = min(bisect.bisect(cust_cum[ws], rand()), len(customers) - 1)
        cust = customers[ci]
        r = rand()
        user = f"user_{cust.id[4:12]}_{int(rand() * cust.users)}"
        meta = {"plan": cust.plan, "region": cust.region, "env": "prod" if r > 0.04 else "staging"}
        trace = f"{getrandbits(128):032x}"
        span = f"{getrandbits(64):016x}"
        kind_r = rand()
        if kind_r < 0.86:
            mi = bisect.bisect(model_cum, rand())
            provider, req_model, resp_model, operation, _, _, _ = MODELS[mi]
            latency = int(lognorm(6.8, 0.7))
            key = f"llm:{provider}:" + (
                f"chatcmpl-{getrandbits(120):030x}"
                if provider == "openai"
                else f"msg_01{getrandbits(110):028x}"
            )
            failed = rand() < 0.02
            conv = None
            if rand() < 0.92:
                bucket = (occurred - shape.start_ns) // (DAY_NS // 96)
                spread = max(1, int(per_bucket[ws] * cust.share / 8))
                conv = f"conv_{cust.id[4:12]}_{bucket}_{int(rand() * spread)}"
            if failed:
                inp = out = total = cache = None
                cost = None
            else:
                inp = int(lognorm(6.5, 1.0)) + 1
                out = 0 if operation == "embeddings" else int(lognorm(5.0, 0.9)) + 1
                cache = int(inp * rand()) if rand() < 0.3 else None
                total = inp + out
                pin, pout = prices[mi]
                cost = (pin * inp + pout * out).scaleb(-6)
            record = UsageRecord(
                idempotency_key=key,
                kind="llm",
                type=operation,
                occurred_at=occurred,
                workspace=ws,
                id=new_record_id(),
                received_at=occurred + latency * 1_000_000 + 150_000_000,
                latency_ms=latency,
                customer_id=cust.id,
                user_id=user,
                provider=provider,
                request_model=req_model,
                response_model=None if failed else resp_model,
                operation=operation,
                input_tokens=inp,
                output_tokens=out,
                total_tokens=total,
                cache_read_tokens=cache,
                cost_usd=cost,
                cost_source="none" if failed else "computed",
                price_ref=None if failed else f"genai-prices:{provider}:{resp_model}",
                status="error" if failed else "success",
                error_type="RateLimitError" if failed else None,
                conversation_id=conv,
                message_id=f"msg_{getrandbits(64):016x}" if rand() < 0.4 else None,
                feature=FEATURES[int(rand() * len(FEATURES))] if rand() < 0.6 else None,
                trace_id=trace,
                span_id=span,
                service_name=f"{ws}-api",
                meta=meta,
            )
        elif kind_r < 0.95:
            name, family, _ = EVENTS[bisect.bisect(event_cum, rand())]
            pid, pname, category = PRODUCTS[min(int(rand() ** 2 * len(PRODUCTS)), len(PRODUCTS) - 1)]
            record = UsageRecord(
                idempotency_key=f"{trace}:{span}",
                kind="event",
                type=name,
                occurred_at=occurred,
                workspace=ws,
                id=new_record_id(),
                received_at=occurred + 50_000_000,
                customer_id=cust.id,
                user_id=user,
                account_domain=f"{cust.id[4:12]}.example.com",
                event_name=name,
                event_family=family,
                product=Product(pid, pname, "library", "1.0", category),
                source="web",
                trace_id=trace,
                span_id=span,
                service_name=f"{ws}-web",
                meta=meta,
            )
        else:
            meter = METERS[bisect.bisect(meter_cum, rand())][0]
            record = UsageRecord(
                idempotency_key=f"{trace}:{span}",
                kind="meter",
                type=meter,
                occurred_at=occurred,
                workspace=ws,
                id=new_record_id(),
                received_at=occurred + 50_000_000,
                customer_id=cust.id,
                meter=meter,
                quantity=Decimal(int(lognorm(2, 1)) + 1),
                trace_id=trace,
                span_id=span,
                service_name=f"{ws}-billing",
                meta=meta,
            )
        batch.append(record)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def db_name(n: int, seed: int) -> str:
    return f"queries-{n}-s{seed}-v{GENERATOR_VERSION}.db"


async def build(path: Path, n: int, seed: int, shape: Shape) -> dict[str, Any]:
    """Write n records through SQLiteStore.write; the writer commits while the next batch is made."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    # The writer's page cache is a config option (storage::sqlite::cache_mb); a large one keeps
    # the random-key unique index in memory while 10M rows go in. The database is the same.
    store = SQLiteStore(path, max_queued_records=4 * BATCH, cache_mb=1024)
    await store.start()
    started = time.perf_counter()
    pending: asyncio.Future[Any] | None = None
    written = 0
    report = max(n // 10, BATCH)
    try:
        for batch in generate(n, seed, shape):
            task = asyncio.ensure_future(store.write(batch))
            await asyncio.sleep(0)  # hand the batch to the writer thread before making the next
            if pending is not None:
                result = await pending
                written += len(result.inserted)
                if result.duplicates:
                    raise RuntimeError(f"{result.duplicates} duplicate keys in generated data")
                if written // report != (written - len(result.inserted)) // report:
                    elapsed = time.perf_counter() - started
                    print(
                        f"  {written:>11,} records  {elapsed:6.0f} s  {written / elapsed:8,.0f} records/s",
                        flush=True,
                    )
            pending = task
        if pending is not None:
            written += len((await pending).inserted)
    finally:
        await store.close()
    elapsed = time.perf_counter() - started
    return {"records": written, "seconds": round(elapsed, 1), "records_per_s": round(written / elapsed)}


def ensure_db(db_dir: Path, n: int, seed: int, rebuild: bool, scaled: bool = True) -> tuple[Path, dict[str, Any]]:
    """The cached database of n records, else a new one: generated through the write path, or
    (`scaled`, n a multiple of 1M above it) copies of the 1M one made in SQL (bench/scale_db.py)."""
    path = db_dir / db_name(n, seed)
    info_path = path.with_suffix(".json")
    if not rebuild and path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        unknown = set(applied_migrations(path)) - set(code_migrations())
        if unknown:  # built by a tree with migrations this one lacks: not what this tree would write
            print(f"cached {path} has migrations this tree lacks ({sorted(unknown)}): rebuilding")
        elif info.get("complete") and info.get("records") == n:
            age_days = (time.time_ns() - info["end_ns"]) / DAY_NS
            print(f"reusing {path} (built {age_days:.1f} days ago in {info['build']['seconds']} s)")
            return path, info
    db_dir.mkdir(parents=True, exist_ok=True)
    if scaled and n > SCALE_BASE and n % SCALE_BASE == 0:
        base, base_info = ensure_db(db_dir, SCALE_BASE, seed, False)
        print(f"building {path}: {n // SCALE_BASE} copies of {base.name} in SQL (bench/scale_db.py)")
        stats = scale(base, path, n // SCALE_BASE, base_info["customers"])
        stats["base_build"] = base_info["build"]
        end_ns, customers = base_info["end_ns"], base_info["customers"]
    else:
        end_ns = (time.time_ns() // 1_000_000_000) * 1_000_000_000
        shape = Shape(end_ns, make_customers(seed))
        print(f"building {path}: {n:,} records through SQLiteStore.write, batches of {BATCH:,}")
        stats = asyncio.run(build(path, n, seed, shape))
        customers = {ws: [c.__dict__ for c in cs] for ws, cs in shape.customers.items()}
    print(f"built {stats['records']:,} records in {stats['seconds']} s: {stats['records_per_s']:,} records/s")
    info = {
        "complete": True,
        "records": n,
        "seed": seed,
        "generator": GENERATOR_VERSION,
        "end_ns": end_ns,
        "build": stats,
        "migrations": applied_migrations(path),
        "customers": customers,
    }
    info_path.write_text(json.dumps(info))
    return path, info


def code_migrations() -> list[str]:
    return [m.name for m in getattr(migrations, "_migrations", [])]


def applied_migrations(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY applied_at")]


NOOP = "baseline: GET /healthz (no-op)"


# --- cases --------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    path: str
    params: dict[str, str]
    goal_ms: float | None = None  # a goal of issue 5 or 20 (p50)
    bound_ms: float | None = None  # no goal; EXPLAIN is printed above this p50
    cursor_pages: int = 0  # follow the cursor this many pages first, then time the next page
    result: dict[str, Any] = field(default_factory=dict)


def make_cases(info: dict[str, Any]) -> list[Case]:
    customers = info["customers"][BIG_WORKSPACE]
    big = customers[0]["id"]
    small = customers[1500]["id"]
    end = datetime.fromtimestamp(info["end_ns"] / 1e9, UTC)
    day = 86_400
    iso = lambda seconds_before: datetime.fromtimestamp(end.timestamp() - seconds_before, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    midnight = lambda days_before: datetime.fromtimestamp(
        (info["end_ns"] // DAY_NS - days_before) * 86_400, UTC
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    records = "/api/v1/usage/records"
    page, filt = 10.0, 10.0
    return [
        # the same HTTP path doing nothing: what every other case pays before its own work
        Case(NOOP, "/healthz", {}),
        Case("records: first page, no filter", records, {}, bound_ms=page),
        Case("records: customer (biggest, ~15%)", records, {"customer": big}, goal_ms=filt),
        Case("records: customer (rank 1500, small)", records, {"customer": small}, goal_ms=filt),
        Case("records: meta[plan]=enterprise", records, {"meta[plan]": "enterprise"}, goal_ms=filt),
        Case(
            "records: meta[region]=ap-south&meta[env]=staging",
            records,
            {"meta[region]": "ap-south", "meta[env]": "staging"},
            goal_ms=filt,
        ),
        Case(
            "records: customer + meta[env]=staging",
            records,
            {"customer": big, "meta[env]": "staging"},
            goal_ms=filt,
        ),
        Case("records: type=chat", records, {"type": "chat"}, bound_ms=page),
        Case("records: type=plan_upgraded (rare)", records, {"type": "plan_upgraded"}, bound_ms=page),
        Case("records: kind=meter", records, {"kind": "meter"}, bound_ms=page),
        Case("records: model=gpt-4o", records, {"model": "gpt-4o"}, bound_ms=page),
        Case(
            "records: model=mistral-large-latest (rare)",
            records,
            {"model": "mistral-large-latest"},
            bound_ms=page,
        ),
        Case("records: from/to last 7 days", records, {"from": iso(7 * day), "to": iso(0)}, bound_ms=page),
        Case(
            "records: from/to one day, 60 days ago",
            records,
            {"from": iso(61 * day), "to": iso(60 * day)},
            bound_ms=page,
        ),
        Case(
            "records: customer (small) + from/to 30 days",
            records,
            {"customer": small, "from": iso(30 * day), "to": iso(0)},
            goal_ms=filt,
        ),
        Case("records: page 21 (cursor), no filter", records, {}, bound_ms=page, cursor_pages=20),
        Case(
            "records: page 21 (cursor), customer (big)",
            records,
            {"customer": big},
            goal_ms=filt,
            cursor_pages=20,
        ),
        Case(
            "records: page 21 (cursor), meta[plan]=pro",
            records,
            {"meta[plan]": "pro"},
            goal_ms=filt,
            cursor_pages=20,
        ),
        Case("records: take=500, no filter", records, {"take": "500"}, bound_ms=100.0),
        Case("series: 90 days, workspace", "/api/v1/usage/series", {}, goal_ms=100.0),
        Case("series: 90 days, customer (biggest)", "/api/v1/usage/series", {"customer": big}, goal_ms=100.0),
        Case("series: 90 days, customer (small)", "/api/v1/usage/series", {"customer": small}, goal_ms=100.0),
        Case("snapshot: month, workspace", "/api/v1/usage/snapshot", {}, bound_ms=100.0),
        Case(
            "snapshot: month, customer (biggest)", "/api/v1/usage/snapshot", {"customer": big}, bound_ms=100.0
        ),
        # issue 20: meter queries; the daily rollups answer whole UTC days by customer
        Case(
            "aggregate: 30 days, customer x day (rollups)",
            "/api/v1/usage/aggregate",
            {"metric": "cost,total_tokens,records", "group_by": "customer", "window": "day",
             "from": midnight(30), "to": midnight(-1)},
            goal_ms=100.0,
        ),
        Case(
            "aggregate: 7 days, model x day in New York (records)",
            "/api/v1/usage/aggregate",
            {"metric": "cost,total_tokens,records", "group_by": "model", "window": "day",
             "tz": "America/New_York", "from": iso(7 * day), "to": iso(0)},
            bound_ms=1000.0,
        ),
        Case("adoption: 30d", "/api/v1/adoption", {"period": "30d"}, goal_ms=50.0),
    ]


# --- measuring over HTTP ------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class StdlibResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:200]}")


class StdlibClient:
    """`--client stdlib`: one keep-alive http.client connection. httpx (h11) spends ~100 ms of
    this process's CPU receiving a 12 MB body that http.client reads in ~13 ms: with it, a big
    answer's time is mostly the client's."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, params: dict[str, str] | None = None) -> StdlibResponse:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        self.conn.request("GET", path + query)
        response = self.conn.getresponse()
        return StdlibResponse(response.status, response.read())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.conn.close()


def walk_cursor(client: Any, case: Case) -> tuple[str | None, float]:
    cursor, started = None, time.perf_counter()
    for _ in range(case.cursor_pages):
        params = dict(case.params, **({"cursor": cursor} if cursor else {}))
        response = client.get(case.path, params=params)
        response.raise_for_status()
        cursor = response.json()["cursor"]
        if cursor is None:
            break
    return cursor, (time.perf_counter() - started) * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (robust to other load on the machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(client: Any, case: Case, calls: int, warmup: int, budget_s: float, pid: int) -> None:
    params = dict(case.params)
    if case.cursor_pages:
        cursor, walk_ms = walk_cursor(client, case)
        case.result["walk_ms"] = round(walk_ms, 1)
        if cursor is not None:
            params["cursor"] = cursor
    latencies: list[float] = []
    errors: dict[int, int] = {}
    body: Any = None
    size = 0

    def call() -> float:
        nonlocal body, size
        t0 = time.perf_counter()
        response = client.get(case.path, params=params)
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            errors[response.status_code] = errors.get(response.status_code, 0) + 1
            if sum(errors.values()) == 1:
                print(f"  {case.name}: HTTP {response.status_code} {response.text[:200]}", file=sys.stderr)
        elif body is None:
            body, size = response.json(), len(response.content)
        return elapsed

    started = time.perf_counter()
    first_ms = None
    for _ in range(warmup):  # untimed; at most a quarter of the case's time budget
        elapsed = call()
        first_ms = elapsed if first_ms is None else first_ms  # nothing remembered yet by the server
        if time.perf_counter() - started > budget_s / 4:
            break
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    while len(latencies) < calls and (len(latencies) < 5 or time.perf_counter() - started < budget_s):
        latencies.append(call())
    cpu = cpu_seconds(pid) - cpu
    items = None
    if isinstance(body, dict) and "items" in body:
        items = len(body["items"])
    elif isinstance(body, dict) and "rows" in body:
        items = len(body["rows"])
    case.result.update(
        calls=len(latencies),
        first_ms=None if first_ms is None else round(first_ms, 2),
        p50_ms=round(percentile(latencies, 50), 2),
        p95_ms=round(percentile(latencies, 95), 2),
        server_cpu_ms=round(1000 * cpu / max(1, len(latencies)), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        max_ms=round(max(latencies), 2) if latencies else float("nan"),
        errors=errors,
        items=items,
        bytes=size,
    )
    if isinstance(body, dict) and isinstance(body.get("tokens"), list):
        case.result["series_tokens"] = sum(p["total"] for p in body["tokens"])
        case.result["series_nonzero_days"] = sum(1 for p in body["tokens"] if p["total"])


# --- the same queries in-process: SQL time and plans --------------------------------------------
class CapturingStore(SQLiteStore):
    """The store's own query methods, remembering the SQL they ran."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.captured: list[tuple[str, list[Any]]] = []

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        self.captured.append((sql, list(params)))
        return super()._fetch(sql, params)


def record_query(store: SQLiteStore, case: Case, cursor: str | None) -> RecordQuery:
    """What the records handler builds from the case's parameters (api/usage.py list_records)."""
    p = case.params
    equals = tuple((column, p[name]) for name, column in EQUALITY_FILTERS.items() if name in p)
    meta = tuple(sorted((k[5:-1], v) for k, v in p.items() if k.startswith("meta[")))
    parse = lambda v: None if v is None else datetime.fromisoformat(v)
    query = RecordQuery(
        workspace=BIG_WORKSPACE,
        order="desc",
        limit=int(p.get("take", 50)) + 1,
        equals=equals,
        model=p.get("model"),
        from_ns=_ns(parse(p.get("from"))),
        to_ns=_ns(parse(p.get("to"))),
        meta=meta,
    )
    if cursor is not None:
        query = replace(query, after_seq=decode_cursor(store.cursor_secret(), query, cursor))
    return query


def direct_call(store: CapturingStore, case: Case, cursor: str | None) -> None:
    now = time.time_ns()
    customer = case.params.get("customer")
    if case.path.endswith("/records"):
        store.query_items(record_query(store, case, cursor), item_text)
    elif case.path.endswith("/series"):
        today = now // DAY_NS
        start, end = (today - SERIES_DAYS + 1) * DAY_NS, (today + 1) * DAY_NS
        store.daily_totals(BIG_WORKSPACE, customer, start, end)
        store.new_conversations(BIG_WORKSPACE, customer, start, end)
    elif case.path.endswith("/snapshot"):
        d = datetime.fromtimestamp(now / 1e9, UTC)
        start = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        store.period_totals(
            BIG_WORKSPACE, customer, int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9
        )
    elif case.path == "/healthz":
        pass
    elif case.path.endswith("/aggregate"):
        p = case.params
        parse = lambda v: datetime.fromisoformat(v)
        where = RecordQuery(BIG_WORKSPACE, from_ns=_ns(parse(p["from"])), to_ns=_ns(parse(p["to"])))
        query = AggregateQuery(
            tuple(p["metric"].split(",")), tuple(p["group_by"].split(",")), where, p["window"], p.get("tz", "UTC"),
            as_json=True,  # as the API asks
        )
        render_bytes(query, store.aggregate(query))
    else:
        store.product_adoption(BIG_WORKSPACE, now - 30 * DAY_NS, None)


def sql_timing(store: CapturingStore, case: Case, cursor: str | None, calls: int, budget_s: float) -> None:
    times: list[float] = []
    started = time.perf_counter()
    direct_call(store, case, cursor)  # warm-up
    while len(times) < calls and (len(times) < 3 or time.perf_counter() - started < budget_s):
        store.captured.clear()
        t0 = time.perf_counter()
        direct_call(store, case, cursor)
        times.append((time.perf_counter() - t0) * 1000)
    case.result["sql_p50_ms"] = round(percentile(times, 50), 2)
    case.result["sql"] = list(store.captured)


def explain(path: Path, sql: str, params: list[Any]) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    finally:
        conn.close()
    depth: dict[int, int] = {0: 0}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, 0) + 1
        lines.append("  " * depth[node] + detail)
    return lines


# --- run ----------------------------------------------------------------------------------------
def server_config(workdir: Path, db: Path, grpc_port: int, http_port: int) -> Path:
    config = workdir / "spanmeter.yaml"
    config.write_text(
        "receivers:\n  otlp:\n    protocols:\n"
        f'      grpc: {{endpoint: "127.0.0.1:{grpc_port}"}}\n'
        f'      http: {{endpoint: "127.0.0.1:{http_port}"}}\n'
        f'storage:\n  sqlite: {{path: "{db}"}}\n'
        f"service:\n  workspace: {BIG_WORKSPACE}\n"
        "api:\n  adoption:\n    rate_limit: {requests: 1000000, window_seconds: 60}\n"
    )
    return config


def rss_mb(pid: int) -> tuple[float, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


def file_mb(path: Path) -> float:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()) / 2**20


def verdict(case: Case) -> str:
    p50 = case.result.get("p50_ms", float("nan"))
    if case.result.get("errors"):
        return "ERROR"
    if case.goal_ms is not None:
        return "PASS" if p50 <= case.goal_ms else "FAIL"
    return "ok" if case.bound_ms is None or p50 <= case.bound_ms else "slow"


def print_table(cases: list[Case], n: int) -> None:
    noop = next((c.result.get("p50_ms") for c in cases if c.name == NOOP), None)
    print(
        f"\n{'case':<52} {'calls':>5} {'first':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'x noop':>7} {'srv CPU':>8} {'sql p50':>8} {'items':>5}  goal"
    )
    for c in cases:
        r = c.result
        goal = (
            f"<= {c.goal_ms:g} ms {verdict(c)}"
            if c.goal_ms is not None
            else (f"({verdict(c)}; bound {c.bound_ms:g})" if c.bound_ms is not None else "")
        )
        items = "" if r.get("items") is None else r["items"]
        nan = float("nan")
        ratio = r.get("p50_ms", nan) / noop if noop else nan
        first = r.get("first_ms")
        print(
            f"{c.name:<52} {r.get('calls', 0):>5} {nan if first is None else first:>8.1f}"
            f" {r.get('p50_ms', nan):>8.2f} {r.get('p95_ms', nan):>8.2f} {r.get('p99_ms', nan):>8.2f}"
            f" {r.get('max_ms', nan):>8.1f} {ratio:>7.1f} {r.get('server_cpu_ms', nan):>8.2f}"
            f" {r.get('sql_p50_ms', nan):>8.2f} {items!s:>5}  {goal}"
        )


def run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    path, info = ensure_db(args.db_dir, n, args.seed, args.rebuild, not args.generate)
    before = applied_migrations(path)
    t0 = time.perf_counter()
    SQLiteStore(path).migrate()  # what `serve` does first; a newer tree may add migrations
    after = applied_migrations(path)
    if after != before:
        print(
            f"applied new migrations {sorted(set(after) - set(before))} in {time.perf_counter() - t0:.1f} s"
        )
    with sqlite3.connect(path) as conn:
        per_ws = dict(conn.execute("SELECT workspace, count(*) FROM records GROUP BY workspace").fetchall())
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
            )
        ]
    print(
        f"database {path}: {file_mb(path):,.0f} MB, {sum(per_ws.values()):,} records "
        f"({', '.join(f'{w} {c:,}' for w, c in sorted(per_ws.items(), key=lambda x: -x[1]))})"
    )
    print(f"  migrations {', '.join(after)}; tables {', '.join(tables)}; indexes {', '.join(indexes)}")
    cases = make_cases(info)
    if args.only:
        cases = [c for c in cases if c.name == NOOP or any(s in c.name for s in args.only)]
    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-queries-"))
    grpc_port, http_port = free_port(), free_port()
    config = server_config(workdir, path, grpc_port, http_port)
    server = Server(
        "spanmeter",
        [*spanmeter_command(), "serve", "-c", str(config)],
        workdir,
        grpc_port,
        http_port,
        args.server_cpu,
    )
    t0 = time.perf_counter()
    server.start(timeout=600)
    startup = time.perf_counter() - t0
    print(f"spanmeter serve (pid {server.pid}) listening after {startup:.1f} s; measuring {len(cases)} cases")
    cursors: dict[str, str | None] = {}
    try:
        client_of = {
            "httpx": lambda: httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120),
            "stdlib": lambda: StdlibClient(http_port),
        }
        with client_of[args.client]() as client:
            for case in cases:
                measure(client, case, args.calls, args.warmup, args.case_seconds, server.pid)
                if case.cursor_pages:
                    cursors[case.name], _ = walk_cursor(client, case)
                print(
                    f"  {case.name:<52} p50 {case.result['p50_ms']:>8.2f} ms  ({case.result['calls']} calls)",
                    flush=True,
                )
        rss, hwm = rss_mb(server.pid)
    finally:
        code = server.stop()
    if code not in (0, None):
        print(f"note: server exited with {code}:\n{server.log_tail()}", file=sys.stderr)
    # The same queries straight on SQLite, in this process (server stopped: nothing else reads).
    store = CapturingStore(path)
    try:
        for case in cases:
            sql_timing(store, case, cursors.get(case.name), min(args.calls, 50), args.case_seconds / 3)
    finally:
        store.readers.close()
    print(f"\n== {n:,} records: spanmeter {spanmeter_version()}; client {args.client}")
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    print(
        f"database: {file_mb(path):,.0f} MB; server RSS {rss:.0f} MB (peak {hwm:.0f} MB) after the run; "
        f"build {info['build']['records_per_s']:,} records/s ({info['build']['seconds']} s)"
    )
    print_table(cases, n)
    over = [c for c in cases if verdict(c) in ("FAIL", "slow", "ERROR")]
    if over or args.plans:
        print("\nQuery plans" + ("" if args.plans else " of the cases over their bound") + ":")
        for case in cases if args.plans else over:
            print(
                f"\n* {case.name}  (HTTP p50 {case.result['p50_ms']} ms, SQL p50 {case.result['sql_p50_ms']} ms)"
            )
            for sql, params in case.result.get("sql", []):
                shown = sql if len(sql) < 400 else sql[:200] + " ... " + sql[-180:]
                print(f"  SQL: {shown}")
                for line in explain(path, sql, params):
                    print(f"   {line}")
    goals = [c for c in cases if c.goal_ms is not None]
    passed = sum(verdict(c) == "PASS" for c in goals)
    print(f"\ngoals at {n:,} records: {passed}/{len(goals)} PASS")
    return {
        "records": n,
        "database_mb": round(file_mb(path), 1),
        "server_rss_mb": round(rss, 1),
        "server_peak_rss_mb": round(hwm, 1),
        "startup_s": round(startup, 2),
        "build": info["build"],
        "records_per_workspace": per_ws,
        "migrations": after,
        "indexes": indexes,
        "cases": [
            {
                "name": c.name,
                "path": c.path,
                "params": c.params,
                "goal_ms": c.goal_ms,
                "verdict": verdict(c),
                **{k: v for k, v in c.result.items() if k != "sql"},
            }
            for c in cases
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records",
        type=lambda s: [int(float(x)) for x in s.split(",")],
        default=[1_000_000],
        help="records in the database; a comma list runs each (e.g. 1e6,1e7)",
    )
    parser.add_argument("--quick", action="store_true", help="200k records, 50 calls per case")
    parser.add_argument(
        "--db-dir",
        type=Path,
        default=None,
        help="where built databases are kept and reused (default: a temp dir, removed)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if a cached database exists")
    parser.add_argument(
        "--generate",
        action="store_true",
        help="build every size through the write path (slow: 10-20 min for 10M) instead of copying the 1M one",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--calls", type=int, default=200, help="measured calls per case (fewer if over --case-seconds)"
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--case-seconds", type=float, default=20.0, help="time cap of one case's measured calls"
    )
    parser.add_argument(
        "--only", action="append", help="run only cases whose name contains this (repeatable)"
    )
    parser.add_argument("--plans", action="store_true", help="print EXPLAIN QUERY PLAN of every case")
    parser.add_argument(
        "--client", choices=("httpx", "stdlib"), default="httpx",
        help="HTTP client of the measured calls: httpx, or http.client (far cheaper on big bodies)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--server-cpu", type=int, default=None)
    parser.add_argument("--client-cpu", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        args.records, args.calls = [200_000], min(args.calls, 50)
    args.server_cpu, args.client_cpu = plan_cpus(args.server_cpu, args.client_cpu)
    temp = None
    if args.db_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="spanmeter-querydb-")
        args.db_dir = Path(temp.name)
    results = []
    try:
        for n in args.records:
            results.append(run(args, n))
    finally:
        if temp is not None:
            temp.cleanup()
    if args.json:
        args.json.write_text(json.dumps({"runs": results}, indent=2))
    failed = any(c["verdict"] in ("FAIL", "ERROR") for r in results for c in r["cases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
