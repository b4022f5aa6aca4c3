"""Templates and spreadsheet safety: headers and formats each CRM's import tool documents, formula
injection neutralised, quoting that survives a round trip through Python's `csv` module."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from spanmeter.crm.cells import BOM, FORMULA_STARTS, csv_text, safe_text
from spanmeter.crm.export import write_rows
from spanmeter.crm.rows import action_row_builder, header, stored_values, usd
from spanmeter.crm.templates import GENERIC, HUBSPOT, SALESFORCE, TEMPLATES, check_columns
from spanmeter.record import Product, UsageRecord

AT = 1_764_806_400_123_456_789  # 2025-12-04T00:00:00.123456789Z


def event(**fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "idempotency_key": "k1", "kind": "event", "type": "product_event", "occurred_at": AT,
        "user_id": "u1", "email": "ann@acme.com", "event_name": "signed_up", "event_family": "activation",
        "product": Product("p1", "Widget", "library"), "source": "web", "campaign_id": "c1",
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]


def row_of(template_name: str, record: UsageRecord) -> dict[str, str]:
    template = TEMPLATES[template_name]
    text = csv_text([header(template, "actions"), action_row_builder(template)(stored_values(record))])
    return next(csv.DictReader(io.StringIO(text, newline="")))


def test_hubspot_uses_its_default_properties_and_formats() -> None:
    # HubSpot keys companies by "Company Domain Name" and contacts by "Email" (its import docs).
    assert header(HUBSPOT, "accounts")[0] == "Company Domain Name"
    row = row_of("hubspot", event(cost_usd=Decimal("1234.5")))
    assert row["Company Domain Name"] == "acme.com"
    assert row["Email"] == "ann@acme.com"
    # A date-and-time value as a UNIX timestamp in milliseconds (UTC), which HubSpot's import
    # documents for CSV files; a date (the accounts' first/last seen) as year-month-day.
    assert row["Activity Date"] == "1764806400123"
    assert row["Cost (USD)"] == "1234.5"  # plain digits: no thousands separator, no currency sign


def test_salesforce_uses_api_names_and_data_loader_formats() -> None:
    assert header(SALESFORCE, "accounts")[:2] == ["Account_Domain__c", "Website"]
    assert all(h == "Website" or h.endswith("__c") for h in header(SALESFORCE, "accounts"))
    assert all(h.endswith("__c") for h in header(SALESFORCE, "actions"))
    row = row_of("salesforce", event())
    assert row["Occurred_At__c"] == "2025-12-04T00:00:00.123Z"  # yyyy-MM-ddTHH:mm:ss.SSSZ
    assert row["Account_Domain__c"] == "acme.com"
    assert row["Idempotency_Key__c"] == "k1"


def test_generic_has_every_field_and_rfc3339_times() -> None:
    row = row_of("generic", UsageRecord(idempotency_key="k2", kind="llm", type="chat", occurred_at=AT,
                                        input_tokens=1000, output_tokens=24, cost_usd=Decimal("0.00000025")))
    assert row["occurred_at"] == "2025-12-04T00:00:00.123456Z"
    assert row["tokens"] == "1024" and row["cost_usd"] == "0.00000025" and row["account_domain"] == ""
    assert [c for c, _ in GENERIC.actions] == header(GENERIC, "actions")


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_formula_cells_are_neutralised(start: str) -> None:
    payload = f"{start}cmd|'/c calc'!A1"
    row = row_of("generic", event(event_name=payload, user_id=payload, source=payload,
                                  product=Product("p", payload, "t")))
    for column in ("event_name", "developer_id", "source", "product_name"):
        assert row[column] == "'" + payload
    assert safe_text("=1+1") == "'=1+1" and safe_text("a=1") == "a=1"


def test_commas_quotes_and_line_breaks_survive_a_round_trip() -> None:
    awkward = 'Widget, "Pro"\r\nedition; ünïcödé'
    row = row_of("generic", event(event_name=awkward, campaign_id=","))
    assert row["event_name"] == awkward and row["campaign_id"] == ","


def test_bom_option() -> None:
    out = io.BytesIO()
    write_rows(out, ["a"], [["é"]], bom=True)
    assert out.getvalue() == (BOM + "a\r\né\r\n").encode()
    out = io.BytesIO()
    write_rows(out, ["a"], [["é"]], bom=False)
    assert out.getvalue() == "a\r\né\r\n".encode()


def test_custom_columns_and_their_errors() -> None:
    custom = GENERIC.with_columns("actions", {"account_domain": "Domain", "tokens": "Tokens"})
    assert header(custom, "actions") == ["Domain", "Tokens"]
    assert list(action_row_builder(custom)(stored_values(event()))) == ["acme.com", ""]
    assert header(GENERIC.without("email"), "actions") == [c for c, _ in GENERIC.actions if c != "email"]
    with pytest.raises(ValueError, match="unknown actions field"):
        check_columns("actions", {"company_name": "Company"})
    with pytest.raises(ValueError, match="needs a header"):
        check_columns("accounts", {"account_domain": " "})


def test_money_is_exact() -> None:
    assert [usd(n) for n in (0, 1, 1500, 2_000_000_000, 123_456_789_012)] == [
        "0", "0.000000001", "0.0000015", "2", "123.456789012"]
