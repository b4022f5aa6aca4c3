"""Summarise a py-spy `--format raw` profile (collapsed stacks): top functions by self and total time.

    python bench/profile_top.py PROFILE.txt [--top 20]

Frames are grouped by function and file (line numbers dropped); "total" counts a sample once per
function on its stack. Percentages are of the samples where a thread was working (see IDLE_LEAVES), all threads.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
# Leaf frames that are a thread waiting, not working. py-spy's own idle detection does not work
# in its default (blocking) mode, which pauses the process; bench/ingest.py --profile uses that
# mode because --nonblocking drops deep stacks (it under-counted genai-prices by half here).
IDLE_LEAVES = frozenset(
    {
        "EpollSelector.select",  # the event loop waiting for I/O
        "Thread.run",  # grpc's poller thread and other waits in C
        "_worker",  # asyncio.to_thread workers waiting for work
        "Writer._run",  # spanmeter's writer waiting on its queue (its work is in _commit)
        "Condition.wait",
        "Event.wait",
        "SimpleQueue.get",
    }
)


def _frame(raw: str) -> str:
    raw = _LINE.sub(")", raw.strip())
    # shorten paths: keep from site-packages/ or src/ on, or the file name
    match = re.match(r"(.*) \((.*)\)$", raw)
    if not match:
        return raw
    name, path = match.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def load(path: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = None
        while frames and frames[0].startswith(("thread ", "process ")):
            head = frames.pop(0)
            if head.startswith("thread "):
                thread = head
        names = [_frame(f) for f in frames]
        if not names or names[-1].split(" (")[0] in IDLE_LEAVES:
            continue
        if thread is not None:
            threads[thread] += n
        total += n
        self_time[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    return total, self_time, inclusive, threads


_PLUMBING = ("(asyncio/", "(click/", "(threading.py)", "(selectors.py)", "(contextlib.py)", "<module>")


def _plumbing(name: str) -> bool:
    return any(marker in name for marker in _PLUMBING)


def summarise(path: Path, top: int = 20) -> str:
    total, self_time, inclusive, threads = load(path)
    if not total:
        return f"{path}: no samples"
    out = [f"{path.name}: {total} samples"]
    if threads:
        out.append(
            "  by thread: " + ", ".join(f"{t} {100 * n / total:.0f}%" for t, n in threads.most_common(6))
        )
    out.append(f"  top {top} by self time:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    out.append(
        f"  top {top} by total time (incl. callees; event-loop, click and threading plumbing left out):"
    )
    shown = [(name, n) for name, n in inclusive.most_common() if not _plumbing(name)][:top]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in shown]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.top))
        print()


if __name__ == "__main__":
    main()
