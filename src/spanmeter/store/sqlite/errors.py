"""SQLite's failures, told apart: the environment's (disk, locks, permissions: retryable, every
caller is told) from a record's value (refused alone), and turned into `StorageError`."""

from __future__ import annotations

import sqlite3
from typing import Final

from spanmeter.errors import StorageError

# SQLite's result codes of a failing environment, by what they are called in messages and metrics.
_ENVIRONMENT_ERRORS: Final = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_BUSY": "locked",
    "SQLITE_LOCKED": "locked",
    "SQLITE_READONLY": "read_only",
    "SQLITE_IOERR": "io",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_PERM": "read_only",
    "SQLITE_NOMEM": "out_of_memory",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "corrupt",
    "SQLITE_PROTOCOL": "locked",
}
_WHAT: Final = {"disk_full": "disk full", "read_only": "the database is read-only", "io": "I/O error"}


def error_reason(error: BaseException) -> str | None:
    name = getattr(error, "sqlite_errorname", None)
    if not isinstance(name, str):
        return "io" if isinstance(error, OSError) else None
    return _ENVIRONMENT_ERRORS.get("_".join(name.split("_")[:2]))  # SQLITE_IOERR_WRITE → SQLITE_IOERR


def environmental(error: BaseException) -> bool:
    """Whether the failure is the store's (disk, locks, permissions), not some record's value."""
    return error_reason(error) is not None or isinstance(error, sqlite3.OperationalError)


def reconnect(error: BaseException) -> bool:
    """A failure that may have left the connection unusable (files gone, permissions changed)."""
    return error_reason(error) in ("io", "cannot_open", "read_only", "corrupt")


def storage_error(error: BaseException) -> StorageError:
    reason = error_reason(error) or "other"
    what = _WHAT.get(reason)
    return StorageError(f"storage write failed: {what + ': ' if what else ''}{error}", reason)


def describe_value_error(error: BaseException) -> str:
    if isinstance(error, OverflowError):
        return f"a value is out of the store's range ({error})"
    return f"the store cannot hold it ({type(error).__name__}: {error})"

