"""The 64-bit hash that makes `(workspace, idempotency_key)` unique in SQLite.

Why not a UNIQUE index on the text: idempotency keys are random (response ids, trace ids), so each
insert lands on a random page of that index, and every page a transaction touches is written to
the WAL at commit. Measured on this machine kind (bench/README.md), that index was about half of
the cost of storing a record, growing with the table (13 → 26 µs per row over the first 400k rows).
An index of 8-byte integers has ~5x more entries per page, so a batch touches far fewer pages.

A UNIQUE index on `key_hash` alone keeps the guarantee exact with open addressing: a key goes
to the first probe `0, 1, 2, …` whose slot is free or already holds the same key. Two different
keys sharing a 64-bit hash (the chance that any two of 10^6 records do is 3 in 10^8; of 10^9
records, 3 %) only send the later one to its next probe: no record is dropped for a collision. Records are
never deleted, so a probe sequence never has a hole.
"""

from __future__ import annotations

import hashlib

_blake2b = hashlib.blake2b


def key_hash(workspace: str, key: str, probe: int = 0) -> int:
    """The signed 64-bit slot of a key (SQLite INTEGER), at the given probe."""
    data = f"{workspace}\0{key}" if probe == 0 else f"{workspace}\0{key}\0{probe}"
    return int.from_bytes(_blake2b(data.encode(), digest_size=8).digest(), "big", signed=True)
