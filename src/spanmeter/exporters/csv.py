"""The `csv` exporter: account and action files a CRM imports as they are.

In its `directory` it keeps two files, in the columns and formats of a template (`generic`,
`hubspot`, `salesforce`: spanmeter/crm/templates.py, with the import documentation each follows):

- `actions.csv`: one row per product event and, with `action_kinds`, per LLM call or meter record,
  appended batch by batch in storage order as the records are committed. A batch is written at the
  file's committed length, flushed to disk, then its progress file `.actions.csv.progress` is
  replaced atomically, then the batch is delivered (crm/files.py): after `kill -9` at any point
  the next start cuts what was written past the committed length and skips the records the file
  already covers, so no row is lost or repeated. Move the file away (e.g. after an import) and the
  next batch starts a new one, header first; a file changed by another program, or written with
  other columns, pauses the exporter with an error saying what to do.
- `accounts.csv`: one row per account domain (first and last seen, developers, events per family,
  LLM calls, tokens, cost, last event, top product), rebuilt from the store every
  `accounts_interval` seconds when records arrived, and replaced by rename: a reader opens the
  previous file or the new one, never a part. Records without an account domain (none given and a
  free-mail or disposable email) appear in `actions.csv` with an empty domain and in no account.

The exporter's `filter` chooses the records of both files; `action_kinds` which of them are rows
of `actions.csv`. Answers: a write that fails for want of space or another passing error is
retried; a directory the process may not write, or a file in conflict, pauses the exporter with the
reason (`spanmeter exporters status`) until an operator acts.

With several spanmeter processes on one database, the exporter runs in one at a time (its lease),
writing to that process's `directory`: point every instance at the same shared directory, or run
the exporter in one instance only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from spanmeter.crm.cells import BOM, csv_text
from spanmeter.crm.export import Cancelled, Selection, write_export
from spanmeter.crm.files import AppendedFile, FileConflict, replace_atomically
from spanmeter.crm.rows import action_row_builder, header, stored_values
from spanmeter.crm.templates import TEMPLATES, Template, TemplateName, check_columns
from spanmeter.exporters.base import Delivered, Outcome, Paused, RetryLater
from spanmeter.exporters.registry import register
from spanmeter.exporters.settings import ExporterConfig, SettingsModel
from spanmeter.priority import lower_this_thread
from spanmeter.store.outbox import Claim, ExportFilter, ItemOf
from spanmeter.store.port import QueryStore

log = logging.getLogger(__name__)

ACTIONS_FILE: Final = "actions.csv"
ACCOUNTS_FILE: Final = "accounts.csv"
_OPERATOR_ERRORS: Final = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)


class CsvColumns(SettingsModel):
    actions: dict[str, str] = Field(
        {}, description="a custom column mapping for actions.csv: field -> header, in column order (default: the template's)"
    )
    accounts: dict[str, str] = Field(
        {}, description="a custom column mapping for accounts.csv: field -> header, in column order (default: the template's)"
    )

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: dict[str, str]) -> dict[str, str]:
        if value:
            check_columns("actions", value)
        return value

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: dict[str, str]) -> dict[str, str]:
        if value:
            check_columns("accounts", value)
        return value


class CsvConfig(ExporterConfig):
    directory: str = Field(description="directory of actions.csv and accounts.csv (created if missing)")
    template: TemplateName = Field("generic", description="column names and formats: generic, hubspot or salesforce")
    columns: CsvColumns = Field(CsvColumns(), description="custom column mappings that replace the template's")
    include_email: bool = Field(True, description="false: actions.csv has no email column")
    action_kinds: list[Literal["event", "llm", "meter"]] = Field(
        ["event"], description="which records are rows of actions.csv: product events, and LLM calls or meter records"
    )
    bom: bool = Field(False, description="start each file with a UTF-8 byte-order mark (Excel needs it for non-ASCII text)")
    accounts_interval: float = Field(
        300.0, ge=0, description="seconds between rebuilds of accounts.csv while records arrive; 0: no accounts.csv"
    )

    @model_validator(mode="after")
    def _kinds(self) -> CsvConfig:
        if not self.action_kinds:
            raise ValueError("action_kinds: name at least one of event, llm, meter")
        return self

    def chosen_template(self) -> Template:
        template = TEMPLATES[self.template]
        if self.columns.actions:
            template = template.with_columns("actions", self.columns.actions)
        if self.columns.accounts:
            template = template.with_columns("accounts", self.columns.accounts)
        return template if self.include_email else template.without("email")


def _header_bytes(template: Template, kind: Literal["actions", "accounts"], bom: bool) -> bytes:
    return ((BOM if bom else "") + csv_text([header(template, kind)])).encode("utf-8")


class CsvExporter:
    """Appends actions.csv from the outbox's batches; rebuilds accounts.csv on its own thread."""

    item_of: ItemOf | None = None  # claims carry UsageRecords

    def __init__(self, name: str, config: CsvConfig) -> None:
        self.name = name
        self.directory = Path(config.directory)
        self.template = config.chosen_template()
        self.action_kinds = frozenset(config.action_kinds)
        self.bom = config.bom
        self.where: ExportFilter = config.filter.export_filter()
        self.accounts_interval = config.accounts_interval
        self.actions = AppendedFile(self.directory / ACTIONS_FILE, name, _header_bytes(self.template, "actions", self.bom))
        self._row = action_row_builder(self.template)
        self._store: QueryStore | None = None
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._dirty.set()  # rebuild once at start: records may have arrived while it was down
        self._thread: threading.Thread | None = None
        self._workspaces: set[str] = set(self.where.workspaces)

    # --- actions.csv: the outbox's batches --------------------------------------------------------
    def send(self, claim: Claim) -> Outcome:
        try:
            return self._append(claim)
        except FileConflict as error:
            return Paused(str(error))
        except OSError as error:
            if error.errno in _OPERATOR_ERRORS:
                return Paused(f"cannot write in {self.directory}: {error}")
            return RetryLater(f"writing {self.actions.path}: {error}")

    def _append(self, claim: Claim) -> Outcome:
        self.directory.mkdir(parents=True, exist_ok=True)
        progress = self.actions.progress()
        skip_to = -1
        position = claim.end
        if progress is not None:
            if progress.batch == claim.message_id:
                return Delivered()  # written before a restart, not yet committed in the store
            if claim.requeued:
                position = progress.position  # dead deliveries sent again: older records
            elif progress.position > claim.end:
                raise FileConflict(
                    f"{self.actions.path} covers records up to store position {progress.position}, past this"
                    f" database's batch ({claim.start}, {claim.end}]: it belongs to another database, or the"
                    " exporter was reset; move it and its .progress file away to start a new file"
                )
            elif progress.position >= claim.start:
                skip_to = progress.position  # written, but the store's position was not committed
        rows = [
            self._row(stored_values(record))
            for seq, record in zip(claim.seqs, claim.records, strict=True)
            if seq > skip_to and record.kind in self.action_kinds
        ]
        new_workspaces = {r.workspace for r in claim.records} - self._workspaces
        if rows or new_workspaces or progress is None:
            workspaces = sorted(self._workspaces | new_workspaces)
            self.actions.append(csv_text(rows).encode("utf-8"), position, claim.message_id, claim.start, workspaces)
        if claim.records:
            self._workspaces |= new_workspaces
            self._dirty.set()
        return Delivered()

    # --- accounts.csv: rebuilt from the store -----------------------------------------------------
    def read_from(self, store: QueryStore) -> None:
        """Called by the runner before the first batch: the store the accounts are rebuilt from."""
        self._store = store
        with contextlib.suppress(FileConflict, OSError):  # send() reports those
            progress = self.actions.progress()
            self._workspaces |= set(progress.workspaces if progress is not None else ())
        if self.accounts_interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._rebuild_loop, name=f"spanmeter-{self.name}-accounts", daemon=True)
            self._thread.start()

    def _rebuild_loop(self) -> None:
        """Rebuild when records arrived, at most once per `accounts_interval`: the first batch
        after a quiet spell is in the file at once, a steady stream every interval."""
        lower_this_thread("csv accounts")
        last = float("-inf")
        while True:
            self._dirty.wait()
            if self._stop.is_set() or self._stop.wait(max(0.0, last + self.accounts_interval - time.monotonic())):
                return
            self._dirty.clear()
            try:
                if self.rebuild_accounts():
                    last = time.monotonic()
            except Cancelled:
                return
            except Exception:  # a store or disk error: tried again after the interval
                last = time.monotonic()
                self._dirty.set()
                log.exception("exporter %s: rebuilding %s failed; trying again in %.0f s",
                              self.name, ACCOUNTS_FILE, self.accounts_interval)

    def rebuild_accounts(self) -> bool:
        """Write accounts.csv anew from the store; False when there is nothing to read yet."""
        assert self._store is not None
        workspaces = tuple(sorted(self._workspaces))
        if not workspaces:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        selection = Selection(workspaces, where=self.where)
        with replace_atomically(self.directory / ACCOUNTS_FILE) as out:
            count = write_export(
                out, self._store, "accounts", self.template, selection, bom=self.bom, cancelled=self._stop.is_set
            )
        log.info("exporter %s: wrote %d accounts to %s", self.name, count, self.directory / ACCOUNTS_FILE)
        return True

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()  # wakes the rebuild thread
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(10)


def create(name: str, config: CsvConfig) -> CsvExporter:
    return CsvExporter(name, config)


TYPE: Final = register("csv", CsvConfig, create)
