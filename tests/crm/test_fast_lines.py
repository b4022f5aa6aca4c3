"""The action rows SQLite writes (store/sqlite/csv_sql.py, the path `spanmeter export csv` takes
on SQLite) are, byte for byte, the rows of a plain reference formatting of the same records: for
every template, a custom column mapping, without email, with a BOM, on records made to be awkward
(formula starts in every text field, commas, quotes, line breaks, non-ASCII, free-mail and IDN
domains, money and tokens at their edges, times before 1970, quantities SQL cannot write)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from spanmeter.crm import export, parallel
from spanmeter.crm.cells import BOM, FORMULA_STARTS
from spanmeter.crm.domains import account_domain
from spanmeter.crm.export import Selection, write_export
from spanmeter.crm.rows import action_line
from spanmeter.crm.templates import TEMPLATES, Template
from spanmeter.record import Product, UsageRecord, decimal_string, new_record_id
from spanmeter.store.outbox import ExportFilter
from spanmeter.store.queries import RecordQuery
from spanmeter.store.sqlite import SQLiteStore

AT = 1_764_806_400_123_456_789  # 2025-12-04T00:00:00.123456789Z
AWKWARD_TEXT = (
    "plain", "=1+1", "+cmd", "-2", "@SUM(A1)", "\tTab", "\rCR", "a,b", 'say "hi"', "two\nlines", "cr\rinside",
    "ünï©ødé ☃", "", " spaced ", "'quoted'", "=", "-", "x\x1fy", "x\x1ey", "\x1f", "nul\x00inside",
)
EMAILS = (None, "ann@acme.com", "bob@gmail.com", "cy@Bücher.Example", "dee@www.Globex.example", "=evil@x.com",
          "no-at-sign", "eve@mailinator.com")
DOMAINS = (None, "www.Initech.io", "https://Shop.Example/path", "gmail.com", "例え.テスト", "not a domain")


def records() -> Iterator[UsageRecord]:
    """Every awkward text in every text field, across kinds, emails, domains, money and times."""
    times = (AT, AT - AT % 1_000_000_000, 0, 999, -1, -1_500_000_000_123, 253_402_300_799_999_999_999 // 1000)
    costs = (None, Decimal(0), Decimal("0.000000001"), Decimal("1.5"), Decimal(10), Decimal("123456789.987654321"),
             Decimal("-0.25"))
    quantities = (Decimal(1), Decimal("2.50"), Decimal("0.001"), Decimal("1E+3"), Decimal("-0"))
    tokens = ((None, None, None), (10, None, None), (None, 5, None), (1, 2, None), (1, 2, 99), (0, 0, 0))
    for i, text in enumerate(AWKWARD_TEXT * 3):
        kind = ("event", "llm", "meter")[i % 3]
        common: dict[str, object] = {
            "idempotency_key": f"{text}{i}",
            "id": new_record_id(), "occurred_at": times[i % len(times)], "user_id": text or None,
            "email": EMAILS[i % len(EMAILS)], "account_domain": DOMAINS[i % len(DOMAINS)],
            "cost_usd": costs[i % len(costs)], "customer_id": f"c{i % 2}",
        }
        if kind == "event":
            record = UsageRecord(kind="event", type=text or "product_event", event_name=text or None,
                                 event_family=("activation", text)[i % 2] or None,
                                 product=Product(text or None, f"{text} name", text or None), source=text or None,
                                 campaign_id=text or None, **common)  # type: ignore[arg-type]
        elif kind == "llm":
            given = tokens[i % len(tokens)]
            record = UsageRecord(kind="llm", type="chat", input_tokens=given[0], output_tokens=given[1],
                                 total_tokens=given[2], **common)  # type: ignore[arg-type]
        else:
            record = UsageRecord(kind="meter", type=text or "api_calls", meter="api_calls",
                                 quantity=quantities[i % len(quantities)], **common)  # type: ignore[arg-type]
        yield record


def mostly_plain() -> Iterator[UsageRecord]:
    """Runs of records with nothing to quote or neutralise (the pages SQLite's lines are checked
    for at once) and, every seventh, an awkward one or one whose only oddity is a developer id
    starting with a formula character (the rows that check must find)."""
    awkward = records()
    for i in range(300):
        if i % 14 == 6:
            yield next(awkward)
            continue
        common: dict[str, object] = {
            "idempotency_key": f"plain-{i}", "id": new_record_id(), "occurred_at": AT + i * 1_000_003,
            "user_id": f"{FORMULA_STARTS[i // 14 % len(FORMULA_STARTS)]}dev" if i % 14 == 13 else f"dev{i % 5}", "email": "ann@acme.com", "customer_id": f"c{i % 2}",
            "cost_usd": Decimal("1.5") if i % 2 else None,
        }
        kind = ("event", "llm", "meter")[i % 3]
        if kind == "event":
            yield UsageRecord(kind="event", type="product_event", event_name="signed up", event_family="activation",
                              product=Product("p1", "Product one", "library"), source="web", campaign_id="c-1",
                              **common)  # type: ignore[arg-type]
        elif kind == "llm":
            yield UsageRecord(kind="llm", type="chat", input_tokens=i, output_tokens=2, **common)  # type: ignore[arg-type]
        else:
            yield UsageRecord(kind="meter", type="api_calls", meter="api_calls", quantity=Decimal(i),
                              **common)  # type: ignore[arg-type]


# --- the reference: each cell written out plainly from the UsageRecord --------------------------
def _text(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _time(template: Template, ns: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC)
    if template.name == "hubspot":
        return str(ns // 10**6)  # UNIX milliseconds
    if template.name == "salesforce":
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction // 10**6:03d}Z"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction // 1000:06d}Z"


def _tokens(record: UsageRecord) -> str:
    if record.kind != "llm":
        return ""
    if record.total_tokens is not None:
        return str(record.total_tokens)
    if record.input_tokens is None and record.output_tokens is None:
        return ""
    return str((record.input_tokens or 0) + (record.output_tokens or 0))


def reference(template: Template, stored: list[UsageRecord], kinds: tuple[str, ...], bom: bool) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, dialect="excel")
    writer.writerow([_text(name) for _, name in template.columns("actions")])
    for record in stored:
        if record.kind not in kinds:
            continue
        product = record.product or Product()
        cells = {
            "occurred_at": _time(template, record.occurred_at),
            "account_domain": account_domain(record.account_domain, record.email) or "",
            "developer_id": _text(record.user_id), "email": _text(record.email), "kind": record.kind,
            "type": _text(record.type), "event_name": _text(record.event_name),
            "event_family": _text(record.event_family), "product_id": _text(product.id),
            "product_name": _text(product.name), "product_type": _text(product.type),
            "source": _text(record.source), "campaign_id": _text(record.campaign_id), "tokens": _tokens(record),
            "quantity": "" if record.quantity is None else decimal_string(record.quantity),
            "cost_usd": "" if record.cost_usd is None else decimal_string(record.cost_usd),
            "idempotency_key": _text(record.idempotency_key),
        }
        writer.writerow([cells[name] for name, _ in template.columns("actions")])
    return ((BOM if bom else "") + buffer.getvalue()).encode("utf-8")


@pytest.fixture(scope="module", params=["awkward", "mostly plain"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SQLiteStore, list[UsageRecord]]]:
    made = list(records() if request.param == "awkward" else mostly_plain())
    db = SQLiteStore(Path(tmp_path_factory.mktemp("fast")) / "spanmeter.db")

    async def write() -> None:
        await db.start()
        await db.write(made)

    asyncio.run(write())
    try:
        # The records as stored (storage order; what the store kept of each), read back whole.
        stored = [record for _, record in db.query_records(RecordQuery("default", order="asc", limit=10_000))]
        assert len(stored) == len(made)
        yield db, stored
    finally:
        asyncio.run(db.close())


CUSTOM = {"idempotency_key": "Key", "cost_usd": "=Cost", "account_domain": "Domain", "occurred_at": "When"}
CASES = [
    *((name, TEMPLATES[name], False) for name in TEMPLATES),
    ("custom columns", TEMPLATES["salesforce"].with_columns("actions", CUSTOM), False),
    ("account first", TEMPLATES["generic"].with_columns("actions", {"account_domain": "a", "email": "e"}), False),
    ("developer first", TEMPLATES["generic"].with_columns("actions", {"developer_id": "d", "email": "e"}), False),
    ("no account", TEMPLATES["hubspot"].with_columns("actions", {"tokens": "t", "quantity": "q"}), False),
    ("one column", TEMPLATES["generic"].with_columns("actions", {"account_domain": "a"}), False),
    ("without email, BOM", TEMPLATES["hubspot"].without("email"), True),
]


@pytest.mark.parametrize("page_size", [5_000, 3])
@pytest.mark.parametrize(("case", "template", "bom"), CASES, ids=[case for case, _, _ in CASES])
def test_the_store_writes_the_reference_rows(
    store: tuple[SQLiteStore, list[UsageRecord]], case: str, template: Template, bom: bool, page_size: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export, "PAGE_SIZE", page_size)  # pages of 3: some have nothing awkward in them
    db, stored = store
    kinds = ("event", "llm", "meter")
    assert action_line(template, kinds, ExportFilter()) is not None or case == "one column"
    out = io.BytesIO()
    rows = write_export(out, db, "actions", template, Selection(("default",)), action_kinds=kinds, bom=bom)
    assert rows == len(stored)
    assert out.getvalue() == reference(template, stored, kinds, bom)
    assert len(list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"), newline="")))) == len(stored) + 1


@pytest.mark.parametrize("page_size", [5_000, 3])
def test_kinds_and_filters_select_in_the_database(
    store: tuple[SQLiteStore, list[UsageRecord]], page_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 3: a page of selected records spans more stored ones, some formatted by Python.
    monkeypatch.setattr(export, "PAGE_SIZE", page_size)
    db, stored = store
    template = TEMPLATES["generic"]
    where = ExportFilter(customers=("c1",))
    out = io.BytesIO()
    write_export(out, db, "actions", template, Selection(("default",), where=where), action_kinds=("event", "meter"))
    chosen = [r for r in stored if r.customer_id == "c1"]
    assert out.getvalue() == reference(template, chosen, ("event", "meter"), False)


@pytest.mark.parametrize("case", ["generic", "one column"])  # written by the store / by Python
def test_progress_counts_the_rows_written_on_either_path(
    store: tuple[SQLiteStore, list[UsageRecord]], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spanmeter export csv`'s progress bar is as long as the records of the chosen kinds: both
    paths report those as they go, so the bar ends full, not early or past its end."""
    monkeypatch.setattr(export, "PAGE_SIZE", 3)
    db, stored = store
    template = next(t for name, t, _ in CASES if name == case)
    assert (action_line(template, ("llm",), ExportFilter()) is None) == (case == "one column")
    seen: list[int] = []
    rows = write_export(io.BytesIO(), db, "actions", template, Selection(("default",)), action_kinds=("llm",),
                        on_page=seen.append)
    assert rows == sum(seen) == sum(1 for r in stored if r.kind == "llm") > 0


@pytest.mark.parametrize("jobs", [2, 3])
@pytest.mark.parametrize(("case", "template", "bom"), CASES[:4], ids=[case for case, _, _ in CASES[:4]])
def test_processes_writing_shares_write_the_same_file(
    store: tuple[SQLiteStore, list[UsageRecord]], case: str, template: Template, bom: bool, jobs: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`export csv --jobs N`: N processes, each a share of the records, one file byte for byte
    the reference's, with every row counted once by the progress bar."""
    monkeypatch.setattr(export, "PAGE_SIZE", 3)  # pages of 3: each share several pages
    db, stored = store
    kinds = ("event", "llm", "meter")
    out, seen = io.BytesIO(), []  # type: io.BytesIO, list[int]
    rows = parallel.write_actions(out, db, lambda: SQLiteStore(db.path), template, Selection(("default",)), kinds,
                                  jobs=jobs, bom=bom, on_page=seen.append)
    assert rows == sum(seen) == len(stored)
    assert out.getvalue() == reference(template, stored, kinds, bom)


def test_a_share_that_fails_fails_the_export_with_its_reason(store: tuple[SQLiteStore, list[UsageRecord]]) -> None:
    db, _ = store

    def broken() -> SQLiteStore:
        raise OSError("disk on fire")

    with pytest.raises(parallel.ShareFailed, match="failed: OSError: disk on fire"):
        parallel.write_actions(io.BytesIO(), db, broken, TEMPLATES["generic"], Selection(("default",)), ("event",),
                               jobs=2)
