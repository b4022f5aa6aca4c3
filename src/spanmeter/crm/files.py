"""Files no reader sees half-written, and an appended file that a crash neither cuts nor repeats.

`replace_atomically`: a whole file is written to a temporary file in the same directory, flushed
to disk (fsync), renamed over the target (an atomic step on POSIX file systems), and the directory
is flushed so the rename itself survives a power loss. A reader opens the old file or the new one,
never a part; `kill -9` at any moment leaves the old file whole (and at most a `.NAME.PID.tmp`,
removed by the next write of that file).

`AppendedFile`: a file that grows by batches of rows in order (the exporter's `actions.csv`),
where rewriting the whole file for each batch would cost its whole size every time. Its progress
file (`.NAME.progress`, JSON, itself replaced atomically) holds the length of the file's committed
content and the last store position it covers. A batch is written at that length (cutting away
whatever a crash left past it), flushed to disk, and only then is the progress file replaced:
- killed before the progress is replaced: the next start cuts the file back to the committed
  length and the batch is written again, once;
- killed after it, before the exporter's position in the store is committed: the batch comes
  again and its records, at or before the covered position, are skipped.
So after `kill -9` the file holds every record exactly once. What a reader may see: rows past the
committed length while a batch is being written, or after a crash until the next start cuts them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_of(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files of `path` left by processes that no longer run (killed mid-write)."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temp.name[len(path.name) + 2 : -4]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                temp.unlink()


@contextlib.contextmanager
def replace_atomically(path: Path) -> Iterator[BinaryIO]:
    """Write `path` anew: yields the temporary file; on a clean exit it replaces `path`."""
    remove_stale_temps(path)
    temp = _temp_of(path, os.getpid())
    try:
        with temp.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(path.parent)


def write_atomically(path: Path, data: bytes) -> None:
    with replace_atomically(path) as out:
        out.write(data)


class FileConflict(Exception):
    """The file on disk is not the one spanmeter has been appending to: an operator must act."""


@dataclass(slots=True)
class Progress:
    owner: str  # the exporter that appends to the file
    header: str  # its header row (columns changed: a new file is needed)
    length: int  # bytes of committed content
    position: int  # the last store position (seq) its rows cover
    batch: str = ""  # the message id of the last batch written (a batch sent again is skipped)
    workspaces: list[str] = field(default_factory=list)  # of the records it has seen


class AppendedFile:
    def __init__(self, path: Path, owner: str, header: bytes) -> None:
        self.path = path
        self.owner = owner
        self.header = header
        self.progress_path = path.with_name(f".{path.name}.progress")

    def progress(self) -> Progress | None:
        """The committed progress (None: never written). It outlives the file: when the file was
        moved away (e.g. picked up by an import), the next batch starts a new one. FileConflict
        when the file and its progress disagree in a way only an operator can settle."""
        found = self._read_progress()
        exists = self.path.exists()
        if found is None:
            if exists:
                raise FileConflict(
                    f"{self.path} exists but was not written by this exporter (no {self.progress_path.name} beside"
                    " it): move it away, or point the exporter at another directory"
                )
            return None
        if found.owner != self.owner:
            raise FileConflict(f"{self.path} is appended to by exporter {found.owner}; give {self.owner} its own directory")
        if exists:
            if found.header != self.header.decode("utf-8"):
                raise FileConflict(
                    f"{self.path} has other columns than the exporter's config: move it away to start a new file"
                )
            size = self.path.stat().st_size
            if size < found.length:
                raise FileConflict(
                    f"{self.path} is shorter ({size} bytes) than what spanmeter committed ({found.length}): another"
                    " program changed it; move it away to start a new file"
                )
        return found

    def _read_progress(self) -> Progress | None:
        try:
            return Progress(**json.loads(self.progress_path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            raise FileConflict(f"{self.progress_path} is unreadable ({error}): move {self.path} and it away") from None

    def _commit(self, progress: Progress) -> None:
        write_atomically(self.progress_path, json.dumps(asdict(progress)).encode())

    def append(self, rows: bytes, position: int, batch: str, start: int, workspaces: list[str]) -> None:
        """Commit `rows` after the committed content; then the progress covers `position`.
        `start`: the position a file that never existed starts after."""
        current = self.progress()
        if current is None or not self.path.exists():
            # A new file: its progress first, then its header by rename (never seen empty). Killed
            # between the two, the next batch finds the progress without a file: a new file again.
            current = Progress(
                self.owner, self.header.decode("utf-8"), len(self.header),
                start if current is None else current.position, "" if current is None else current.batch,
                workspaces,
            )
            self._commit(current)
            write_atomically(self.path, self.header)
        with self.path.open("r+b") as out:
            out.truncate(current.length)  # what a killed predecessor wrote past the committed length
            out.seek(current.length)
            out.write(rows)
            out.flush()
            os.fsync(out.fileno())
        self._commit(Progress(self.owner, current.header, current.length + len(rows), position, batch, workspaces))
