"""Daily rollups per model, kept in the writer's transaction, so meter queries by model, provider
or kind (the dashboard's "top models this month") read a few rows instead of every record of the
period (at 10M records, a month of one workspace is ~2.5M records: seconds).

    usage_daily_model  (workspace, UTC day, kind, provider, model) -> records, tokens,
                       input tokens, output tokens, cost_nano

`model` is the query API's model dimension: the response model, else the request model.
`provider` and `model` are stored as '' for none and '=' + the value otherwise, so that an empty
name stays apart from none (primary key columns cannot be NULL). Tokens count LLM records only,
cost every record, as the query API's metrics do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from spanmeter.record import UsageRecord
from spanmeter.store.constants import DAY_NS
from spanmeter.store.sql.connection import Connection
from spanmeter.store.sql.dialect import Dialect


def schema(d: Dialect) -> tuple[str, ...]:
    return (
        (
            f"CREATE TABLE usage_daily_model (workspace {d.text} NOT NULL, day {d.integer} NOT NULL,"
            f" kind {d.text} NOT NULL, provider {d.text} NOT NULL, model {d.text} NOT NULL,"
            f" records {d.integer} NOT NULL, tokens {d.integer} NOT NULL, input_tokens {d.integer} NOT NULL,"
            f" output_tokens {d.integer} NOT NULL, cost_nano {d.integer} NOT NULL,"
            f" PRIMARY KEY (workspace, day, kind, provider, model)){d.table_options}"
        ),
    )


_TOKENS: Final = "COALESCE(total_tokens, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))"
BACKFILL: Final = (
    (
        f"INSERT INTO usage_daily_model SELECT workspace, occurred_at / {DAY_NS}, kind,"
        " COALESCE('=' || provider, ''), COALESCE('=' || COALESCE(response_model, request_model), ''), COUNT(*),"
        f" SUM(CASE WHEN kind = 'llm' THEN {_TOKENS} ELSE 0 END),"
        " SUM(CASE WHEN kind = 'llm' THEN COALESCE(input_tokens, 0) ELSE 0 END),"
        " SUM(CASE WHEN kind = 'llm' THEN COALESCE(output_tokens, 0) ELSE 0 END),"
        " SUM(COALESCE(cost_usd_nano, 0)) FROM records GROUP BY 1, 2, 3, 4, 5"
    ),
)
_SUMMED: Final = ("records", "tokens", "input_tokens", "output_tokens", "cost_nano")
_UPSERT: Final = (
    f"INSERT INTO usage_daily_model (workspace, day, kind, provider, model, {', '.join(_SUMMED)})"
    f" VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(_SUMMED))})"
    " ON CONFLICT (workspace, day, kind, provider, model) DO UPDATE SET "
    + ", ".join(f"{c} = usage_daily_model.{c} + excluded.{c}" for c in _SUMMED)
)
# metric -> its sum over usage_daily_model rows
METRIC_SUMS: Final = {
    "cost": "SUM(cost_nano)",
    "input_tokens": "SUM(input_tokens)",
    "output_tokens": "SUM(output_tokens)",
    "total_tokens": "SUM(tokens)",
    "records": "SUM(records)",
}
# dimension -> its value from a usage_daily_model row (NULL for none)
DIMENSION_SQL: Final = {
    "kind": "kind",
    "provider": "CASE WHEN provider = '' THEN NULL ELSE substr(provider, 2) END",
    "model": "CASE WHEN model = '' THEN NULL ELSE substr(model, 2) END",
}
# filter column -> its test on a usage_daily_model row (the value bound as given)
FILTER_SQL: Final = {"kind": "kind = ?", "provider": "provider = '=' || ?"}


def roll_up_models(conn: Connection, stored: Iterable[tuple[UsageRecord, int | None]]) -> None:
    """Add newly stored records, with their stored cost in nano-USD, in the caller's transaction."""
    totals: dict[tuple[str, int, str, str, str], list[int]] = {}
    for record, cost_nano in stored:
        model = record.response_model if record.response_model is not None else record.request_model
        key = (
            record.workspace,
            record.occurred_at // DAY_NS,
            record.kind,
            "" if record.provider is None else "=" + record.provider,
            "" if model is None else "=" + model,
        )
        row = totals.get(key)
        if row is None:
            row = totals[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        if record.kind == "llm":
            inputs, outputs = record.input_tokens or 0, record.output_tokens or 0
            row[1] += record.total_tokens if record.total_tokens is not None else inputs + outputs
            row[2] += inputs
            row[3] += outputs
        row[4] += cost_nano or 0
    if totals:
        conn.executemany(_UPSERT, [(*key, *row) for key, row in totals.items()])
