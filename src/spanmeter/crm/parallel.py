"""`spanmeter export csv --jobs N`: the actions file written by N processes at once.

Writing an action row is mostly the database's work (crm/export.py `store_lines`), and one
SQLite connection uses one core. So the workspace's records are cut into N shares of the
storage order (seq ranges of about equal width); this process writes the first share straight
to the output while each of N - 1 forked children writes its own share, through its own store
connections, to an anonymous temporary file (unlinked from the start: nothing is left behind
whatever happens). The children's files are then copied after the first share in order, so the
file is byte for byte the one a single process writes. Children report each page they write
(the progress bar), and stop at their next page when this process is gone.

Two threads would not do: SQLite's allocator statistics take a process-wide lock on every
allocation, and two threads reading at once spent twice the CPU for no gain (measured).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import IO, BinaryIO

from spanmeter.crm.export import Selection, first_page, store_lines, write_text
from spanmeter.crm.rows import header
from spanmeter.crm.templates import Template
from spanmeter.store.port import QueryStore


class ShareFailed(Exception):
    """A child process could not write its share of the export."""


def shares(store: QueryStore, selection: Selection, jobs: int) -> list[Selection]:
    """`selection` cut into up to `jobs` consecutive seq ranges of about equal width (one
    workspace); [selection] when there is nothing to cut."""
    if jobs < 2 or len(selection.workspaces) != 1 or selection.seqs is not None:
        return [selection]
    query = replace(first_page(selection, selection.workspaces[0]), limit=1)
    lowest = store.query_columns(query, ())
    highest = store.query_columns(replace(query, order="desc"), ())
    if not lowest:
        return [selection]
    first, end = lowest[0][0], highest[0][0] + 1
    jobs = min(jobs, end - first)
    cuts = [first + (end - first) * i // jobs for i in range(jobs + 1)]
    return [replace(selection, seqs=(start, stop)) for start, stop in itertools.pairwise(cuts)]


def write_actions(
    out: BinaryIO,
    store: QueryStore,
    open_store: Callable[[], QueryStore],
    template: Template,
    selection: Selection,
    kinds: tuple[str, ...],
    *,
    jobs: int,
    bom: bool = False,
    on_page: Callable[[int], None] | None = None,
) -> int | None:
    """The actions export of `selection` on `out` by up to `jobs` processes (`open_store` opens
    the store in a child); the number of rows, or None when the store does not write the lines
    or the records cannot be cut (the caller writes them in this process)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    parts = shares(store, selection, jobs)
    first = store_lines(store, parts[0], template, kinds, on_page) if len(parts) > 1 else None
    if first is None:
        return None
    context = multiprocessing.get_context("fork")
    with contextlib.ExitStack() as cleanup:
        children: list[_Share] = []
        for part in parts[1:]:
            spool: IO[bytes] = cleanup.enter_context(tempfile.TemporaryFile())
            receive, send = context.Pipe(duplex=False)
            cleanup.callback(receive.close)
            process = context.Process(
                target=_write_share, args=(open_store, part, template, kinds, spool.fileno(), send, os.getpid()),
                daemon=True,
            )
            process.start()
            cleanup.callback(_stop, process)
            send.close()
            children.append(_Share(receive, spool))
        def reported(lines: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
            for page in lines:
                yield page
                for child in children:
                    child.take_reports(on_page, wait=False)

        rows = write_text(out, header(template, "actions"), reported(first), bom)  # `out` left open
        for child in children:
            rows += child.take_reports(on_page, wait=True)
            child.spool.seek(0)
            shutil.copyfileobj(child.spool, out, 1 << 20)
        return rows


def _stop(child: BaseProcess) -> None:
    if child.is_alive():
        child.terminate()
    child.join()


@dataclass
class _Share:
    """A child's reports (rows per page; finally ("done", rows) or ("failed", why)) and file."""

    reports: Connection
    spool: IO[bytes]
    rows: int | None = None  # once done

    def take_reports(self, on_page: Callable[[int], None] | None, *, wait: bool) -> int:
        """Take the reports there are (`wait`: until the child is done); the rows it wrote."""
        while self.rows is None and (wait or self.reports.poll()):
            try:
                report = self.reports.recv()
            except EOFError:
                raise ShareFailed("a process writing part of the export ended without finishing it") from None
            if isinstance(report, int):
                if on_page is not None:
                    on_page(report)
                continue
            status, value = report
            if status == "failed":
                raise ShareFailed(f"a process writing part of the export failed: {value}")
            self.rows = int(value)
        return self.rows or 0


def _write_share(
    open_store: Callable[[], QueryStore], selection: Selection, template: Template, kinds: tuple[str, ...],
    spool: int, send: Connection, parent: int,
) -> None:
    """A child: its share's lines (no header) as UTF-8 on the file `spool`, a report per page.
    Ends with os._exit: the store connections inherited from the parent are never touched."""
    code = 1
    try:
        lines = store_lines(open_store(), selection, template, kinds, None)
        if lines is None:
            raise ShareFailed("the store cannot write these lines")
        rows = 0
        with os.fdopen(spool, "wb", closefd=False) as out:
            for chunk, count in lines:
                if os.getppid() != parent:  # the export was killed: stop
                    return
                out.write(chunk.encode("utf-8"))
                rows += count
                send.send(count)
        send.send(("done", rows))
        code = 0
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it (Ctrl-C: just exit)
        send.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        os._exit(code)
