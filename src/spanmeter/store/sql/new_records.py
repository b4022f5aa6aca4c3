"""Everything newly stored records move besides the records table, in the writer's transaction:
the daily, adoption and per-model rollups and the unknown-model count. One function for both
backends' writers (its statements are in SQL both databases accept), so a rollup added later
cannot be kept by one backend and forgotten by the other."""

from __future__ import annotations

from spanmeter.record import UsageRecord
from spanmeter.store.sql import attention, model_rollup
from spanmeter.store.sql.adoption_rollup import roll_up_adoption
from spanmeter.store.sql.connection import Connection
from spanmeter.store.sql.rollup import roll_up


def roll_up_new(conn: Connection, new: list[tuple[UsageRecord, int | None]]) -> None:
    """Add the newly stored records (each with its stored cost in nano-USD) to every rollup."""
    roll_up(conn, new)
    roll_up_adoption(conn, (record for record, _ in new))
    model_rollup.roll_up_models(conn, new)
    attention.count_unknown_models(conn, (record for record, _ in new))
