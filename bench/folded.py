"""Summarise a py-spy raw profile (``--format raw --threads --subprocesses``) as tables.

``bench/drain.py --profile FILE`` records the daemon and its receiver process. A flame graph
answers "where does the time go" only by eye; this prints, per process and thread, its share
of the samples and the functions that take them (self time, and time including callees), so
a note can quote figures.

    python bench/folded.py /tmp/drain.txt --top 15
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

PROCESS = re.compile(r'process \d+:"(?P<cmd>[^"]*)"')
THREAD = re.compile(r"thread \(\w+\)(?::\s*(?P<name>.*))?")
FRAME = re.compile(r"(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")


def process_label(cmd: str) -> str:
    """``streamd run`` or ``streamd.runtime.mqtt.child``: the module, not the whole command line."""
    words = cmd.split()
    return words[words.index("-m") + 1] if "-m" in words else words[0]


def function(frame: str) -> str:
    """``C.f (paho/mqtt/client.py:3168)`` -> ``paho/mqtt/client.py:C.f``: one entry per
    function, whatever line it was on."""
    m = FRAME.match(frame)
    return f"{m['file']}:{m['func']}" if m else frame


def parse(path: Path) -> dict[tuple[str, str], list[tuple[list[str], int]]]:
    """Stacks (outermost first, without process and thread frames) per (process, thread);
    only the innermost process frame counts (the receiver is listed under the daemon)."""
    stacks: dict[tuple[str, str], list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        body, _, count = line.rpartition(" ")
        process, thread, frames = "?", "?", []
        for frame in body.split(";"):
            if m := PROCESS.fullmatch(frame):
                process = process_label(m["cmd"])
            elif m := THREAD.fullmatch(frame):
                thread = m["name"] or "main"
            else:
                frames.append(function(frame))
        stacks[(process, thread)].append((frames, int(count)))
    return stacks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=12, help="functions listed per thread")
    ns = ap.parse_args(argv)
    stacks = parse(ns.profile)
    total = sum(n for entries in stacks.values() for _, n in entries)
    print(f"{total} samples (a sample is one thread seen running)\n")
    by_size = sorted(stacks.items(), key=lambda kv: -sum(n for _, n in kv[1]))
    for (process, thread), entries in by_size:
        samples = sum(n for _, n in entries)
        if samples < total * 0.01:
            continue
        own: Counter[str] = Counter()
        within: Counter[str] = Counter()
        for frames, n in entries:
            if frames:
                own[frames[-1]] += n
            for f in set(frames):
                within[f] += n
        print(f"== {process} / {thread}: {samples} samples, {100 * samples / total:.1f} %")
        print(f"   {'self %':>7} {'total %':>7}  function")
        for f, n in own.most_common(ns.top):
            print(f"   {100 * n / samples:>7.1f} {100 * within[f] / samples:>7.1f}  {f}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
