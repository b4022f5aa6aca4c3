"""Restart safety of the appended actions file, step by step: what each crash point leaves, and
what the next batch makes of it (the whole-process kill -9 tests are in tests/exporters/test_csv.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from spanmeter.crm.files import AppendedFile, FileConflict, remove_stale_temps, replace_atomically
from spanmeter.exporters.base import Delivered, Paused
from spanmeter.exporters.csv import CsvConfig, CsvExporter
from spanmeter.record import UsageRecord
from spanmeter.store.outbox import Claim


def records(first: int, count: int) -> list[UsageRecord]:
    return [UsageRecord(idempotency_key=f"k{i}", kind="event", type="t", occurred_at=i, email=f"u@c{i % 3}.example")
            for i in range(first, first + count)]


def claim(start: int, end: int) -> Claim:
    return Claim("csv/t", list(range(start + 1, end + 1)), False, records=records(start, end - start),
                 start=start, end=end)


def keys(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [row["idempotency_key"] for row in csv.DictReader(f)]


def exporter(tmp_path: Path) -> CsvExporter:
    return CsvExporter("csv/t", CsvConfig(directory=str(tmp_path), accounts_interval=0))


def test_a_batch_sent_again_after_a_crash_is_not_written_twice(tmp_path: Path) -> None:
    csv_exporter = exporter(tmp_path)
    assert csv_exporter.send(claim(0, 5)) == Delivered()
    # killed before the store committed the position: the same batch comes again, then a larger one
    assert exporter(tmp_path).send(claim(0, 5)) == Delivered()
    assert exporter(tmp_path).send(claim(0, 8)) == Delivered()  # overlaps what the file covers
    assert exporter(tmp_path).send(claim(8, 10)) == Delivered()
    assert keys(tmp_path / "actions.csv") == [f"k{i}" for i in range(10)]


def test_a_torn_append_is_cut_back_and_written_once(tmp_path: Path) -> None:
    assert exporter(tmp_path).send(claim(0, 3)) == Delivered()
    with (tmp_path / "actions.csv").open("ab") as f:  # killed mid-write: part of the next batch
        f.write(b"2025-01-01T00:00:00.000000Z,half a ro")
    assert exporter(tmp_path).send(claim(3, 6)) == Delivered()
    assert keys(tmp_path / "actions.csv") == [f"k{i}" for i in range(6)]
    assert (tmp_path / "actions.csv").read_bytes().endswith(b"k5\r\n")


def test_a_file_moved_away_starts_anew_after_what_it_covered(tmp_path: Path) -> None:
    assert exporter(tmp_path).send(claim(0, 3)) == Delivered()
    (tmp_path / "actions.csv").rename(tmp_path / "imported.csv")
    assert exporter(tmp_path).send(claim(3, 5)) == Delivered()
    assert keys(tmp_path / "imported.csv") == ["k0", "k1", "k2"]
    assert keys(tmp_path / "actions.csv") == ["k3", "k4"]


def test_conflicts_pause_with_what_to_do(tmp_path: Path) -> None:
    assert exporter(tmp_path).send(claim(0, 3)) == Delivered()
    outcome = exporter(tmp_path).send(claim(0, 1))
    assert isinstance(outcome, Paused) and "belongs to another database" in outcome.reason  # file ahead of store
    hubspot = CsvExporter("csv/t", CsvConfig(directory=str(tmp_path), template="hubspot", accounts_interval=0))
    outcome = hubspot.send(claim(3, 4))
    assert isinstance(outcome, Paused) and "other columns" in outcome.reason
    other = CsvExporter("csv/other", CsvConfig(directory=str(tmp_path), accounts_interval=0))
    outcome = other.send(claim(3, 4))
    assert isinstance(outcome, Paused) and "give csv/other its own directory" in outcome.reason


def test_a_shorter_file_is_a_conflict(tmp_path: Path) -> None:
    appended = AppendedFile(tmp_path / "a.csv", "me", b"h\r\n")
    appended.append(b"1\r\n2\r\n", 2, "m1", 0, ["default"])
    (tmp_path / "a.csv").write_bytes(b"h\r\n")
    with pytest.raises(FileConflict, match="shorter"):
        appended.progress()


def test_replace_atomically_keeps_the_old_file_on_failure_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replace_atomically(target) as out:
        out.write(b"new, half")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    stale = tmp_path / ".out.csv.999999999.tmp"  # a pid that does not run
    stale.write_bytes(b"left by a killed export")
    remove_stale_temps(target)
    assert not stale.exists()
