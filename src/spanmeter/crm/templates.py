"""Column templates: which columns a CRM's import tool expects, named and formatted its way.

A template maps the fields spanmeter computes (ACTION_FIELDS, ACCOUNT_FIELDS) to column headers,
and says how times are written. Values are always UTF-8 text, numbers in plain digits with a `.`
before decimals, no thousands separator and no currency sign; money exact (the stored nano-USD).

- `generic`: the field names as headers, times in RFC 3339 UTC with microseconds
  (`2026-11-23T12:00:00.123456Z`): for a warehouse or a script.
- `hubspot`: HubSpot's import tool (https://knowledge.hubspot.com/import-and-export/set-up-your-import-file):
  a header row whose headers match property names, UTF-8; companies are keyed by the default
  property "Company Domain Name" and contacts by "Email"; other headers are custom properties to
  create, or to map, during the import. Values per property type as the same page's "Format
  values based on property field type" documents them: dates year-month-day with `-` separators
  (`YYYY-MM-DD`; HubSpot's date properties hold a day at midnight UTC,
  https://developers.hubspot.com/docs/faq/how-should-timestamps-be-formatted-for-hubspots-apis);
  date-and-time values either `hh:mm` after the date, read in a time zone the file does not state,
  or a UNIX timestamp in milliseconds (CSV files), which is UTC by definition and keeps the
  milliseconds: the activity time is written that way (`1764849600123`).
- `salesforce`: Data Loader and the Data Import Wizard, headers as field API names so that
  auto-match maps them: standard `Website` and `Email`, custom fields ending in `__c` to create
  first (`Account_Domain__c` as the account's External ID, so an upsert matches on the domain,
  never on a company name; `Idempotency_Key__c` likewise for actions). Dates `yyyy-MM-dd`, date-times
  `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC (Data Loader's supported formats,
  https://developer.salesforce.com/docs/atlas.en-us.dataLoader.meta/dataLoader/supported_data_types.htm;
  CSV readiness: https://help.salesforce.com/s/articleView?id=ind.prepare_csv_files.htm; both
  formats are in the accepted lists of "Format the 'Date' and 'Date Time' data in a CSV file for
  Salesforce Data Loader", https://help.salesforce.com/s/articleView?id=000385167&type=1, the
  date-time with its `Z` so no time zone setting of Data Loader shifts it).

A config may replace a template's columns (`columns::actions`, `columns::accounts`: field → header,
in order); the template's time formats still apply.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from spanmeter.usage_schema import EVENT_FAMILIES

Kind = Literal["actions", "accounts"]
KINDS: Final[tuple[Kind, ...]] = ("actions", "accounts")

ACTION_FIELDS: Final = (
    "occurred_at", "account_domain", "developer_id", "email", "kind", "type", "event_name", "event_family",
    "product_id", "product_name", "product_type", "source", "campaign_id", "tokens", "quantity", "cost_usd",
    "idempotency_key",
)
ACCOUNT_FIELDS: Final = (
    "account_domain", "first_seen", "last_seen", "developers",
    *(f"events_{family}" for family in EVENT_FAMILIES),
    "llm_calls", "tokens", "cost_usd", "last_event", "last_event_at", "top_product",
)
FIELDS: Final[Mapping[Kind, tuple[str, ...]]] = {"actions": ACTION_FIELDS, "accounts": ACCOUNT_FIELDS}
TIME_FIELDS: Final = frozenset({"occurred_at", "first_seen", "last_seen", "last_event_at"})
TimeFormat = Callable[[int], str]  # ns since the epoch, UTC -> the cell


_DAY_SECONDS: Final = 86_400


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    """YYYY-MM-DD of a day since the epoch (cached: the rows of one export span few days)."""
    return time.strftime("%Y-%m-%d", time.gmtime(days * _DAY_SECONDS))


def _clock(ns: int) -> tuple[str, int, int, int, int]:
    seconds, rest = divmod(ns, 1_000_000_000)
    days, of_day = divmod(seconds, _DAY_SECONDS)
    hours, of_hour = divmod(of_day, 3600)
    return _day(days), hours, of_hour // 60, of_hour % 60, rest


def rfc3339(ns: int) -> str:
    """RFC 3339 UTC with microseconds (truncated), e.g. 2026-11-23T12:00:00.123456Z, as record.format_ns."""
    seconds, rest = divmod(ns, 1_000_000_000)  # _clock spelled out: this runs for every action row
    days, of_day = divmod(seconds, _DAY_SECONDS)
    hours, of_hour = divmod(of_day, 3600)
    return f"{_day(days)}T{hours:02d}:{of_hour // 60:02d}:{of_hour % 60:02d}.{rest // 1000:06d}Z"


def salesforce_datetime(ns: int) -> str:
    """yyyy-MM-ddTHH:mm:ss.SSSZ (milliseconds, truncated)."""
    day, h, m, s, rest = _clock(ns)
    return f"{day}T{h:02d}:{m:02d}:{s:02d}.{rest // 1_000_000:03d}Z"


def date_only(ns: int) -> str:
    """yyyy-MM-dd."""
    return _day(ns // 1_000_000_000 // _DAY_SECONDS)


def unix_millis(ns: int) -> str:
    """Milliseconds since the epoch (UTC), truncated: HubSpot's datetime value."""
    return str(ns // 1_000_000)


@dataclass(frozen=True)
class Template:
    name: str
    actions: tuple[tuple[str, str], ...]  # (field, header) in column order
    accounts: tuple[tuple[str, str], ...]
    action_time: TimeFormat
    account_time: TimeFormat

    def columns(self, kind: Kind) -> tuple[tuple[str, str], ...]:
        return self.actions if kind == "actions" else self.accounts

    def time_format(self, kind: Kind) -> TimeFormat:
        return self.action_time if kind == "actions" else self.account_time

    def with_columns(self, kind: Kind, columns: Mapping[str, str]) -> Template:
        """This template with `kind`'s columns replaced (field -> header, in order)."""
        chosen = tuple(columns.items())
        if kind == "actions":
            return Template(self.name, chosen, self.accounts, self.action_time, self.account_time)
        return Template(self.name, self.actions, chosen, self.action_time, self.account_time)

    def without(self, field: str) -> Template:
        """This template without the columns of `field` (e.g. email, when config leaves it out)."""
        return Template(
            self.name,
            tuple(c for c in self.actions if c[0] != field),
            tuple(c for c in self.accounts if c[0] != field),
            self.action_time,
            self.account_time,
        )


_FAMILY_LABELS: Final = {family: family.capitalize() for family in EVENT_FAMILIES}

GENERIC: Final = Template(
    "generic",
    tuple((f, f) for f in ACTION_FIELDS),
    tuple((f, f) for f in ACCOUNT_FIELDS),
    rfc3339,
    rfc3339,
)

HUBSPOT: Final = Template(
    "hubspot",
    (
        ("occurred_at", "Activity Date"),
        ("account_domain", "Company Domain Name"),
        ("developer_id", "Developer ID"),
        ("email", "Email"),
        ("kind", "Usage Kind"),
        ("type", "Usage Type"),
        ("event_name", "Event Name"),
        ("event_family", "Event Family"),
        ("product_id", "Product ID"),
        ("product_name", "Product Name"),
        ("product_type", "Product Type"),
        ("source", "Source"),
        ("campaign_id", "Campaign ID"),
        ("tokens", "Tokens"),
        ("quantity", "Quantity"),
        ("cost_usd", "Cost (USD)"),
        ("idempotency_key", "Idempotency Key"),
    ),
    (
        ("account_domain", "Company Domain Name"),
        ("first_seen", "First Seen"),
        ("last_seen", "Last Seen"),
        ("developers", "Developers"),
        *((f"events_{family}", f"{label} Events") for family, label in _FAMILY_LABELS.items()),
        ("llm_calls", "LLM Calls"),
        ("tokens", "Tokens"),
        ("cost_usd", "Cost (USD)"),
        ("last_event", "Last Event"),
        ("last_event_at", "Last Event Date"),
        ("top_product", "Top Product"),
    ),
    unix_millis,
    date_only,
)

SALESFORCE: Final = Template(
    "salesforce",
    (
        ("occurred_at", "Occurred_At__c"),
        ("account_domain", "Account_Domain__c"),
        ("developer_id", "Developer_Id__c"),
        ("email", "Email__c"),
        ("kind", "Usage_Kind__c"),
        ("type", "Usage_Type__c"),
        ("event_name", "Event_Name__c"),
        ("event_family", "Event_Family__c"),
        ("product_id", "Product_Id__c"),
        ("product_name", "Product_Name__c"),
        ("product_type", "Product_Type__c"),
        ("source", "Source__c"),
        ("campaign_id", "Campaign_Id__c"),
        ("tokens", "Tokens__c"),
        ("quantity", "Quantity__c"),
        ("cost_usd", "Cost_USD__c"),
        ("idempotency_key", "Idempotency_Key__c"),
    ),
    (
        ("account_domain", "Account_Domain__c"),
        ("account_domain", "Website"),
        ("first_seen", "First_Seen__c"),
        ("last_seen", "Last_Seen__c"),
        ("developers", "Developers__c"),
        *((f"events_{family}", f"{label}_Events__c") for family, label in _FAMILY_LABELS.items()),
        ("llm_calls", "LLM_Calls__c"),
        ("tokens", "Tokens__c"),
        ("cost_usd", "Cost_USD__c"),
        ("last_event", "Last_Event__c"),
        ("last_event_at", "Last_Event_Date__c"),
        ("top_product", "Top_Product__c"),
    ),
    salesforce_datetime,
    date_only,
)

TEMPLATES: Final[Mapping[str, Template]] = {t.name: t for t in (GENERIC, HUBSPOT, SALESFORCE)}
TemplateName = Literal["generic", "hubspot", "salesforce"]


def check_columns(kind: Kind, columns: Mapping[str, str]) -> None:
    """ValueError naming the unknown fields (and the known ones) or an empty mapping."""
    unknown = [f for f in columns if f not in FIELDS[kind]]
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {', '.join(unknown)}; known: {', '.join(FIELDS[kind])}")
    if not columns:
        raise ValueError(f"no {kind} columns: name at least one field")
    if any(not header.strip() for header in columns.values()):
        raise ValueError(f"{kind}: every column needs a header")
