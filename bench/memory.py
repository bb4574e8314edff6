"""Base memory of ``streamd run`` with the model loaded: RSS and PSS per process.

By default streamd is two processes (the daemon and its MQTT receiver). Three measures, once
the daemon is ready and idle (no traffic):

* RSS, per process and summed: the sum counts the pages the two share (libpython, libc,
  OpenSSL) twice;
* PSS (``/proc/PID/smaps_rollup``): every shared page split between all the processes on the
  box that map it, so summed PSS is streamd's share of the box;
* unique: the resident physical pages of the whole process tree, each counted once (from
  ``/proc/PID/pagemap``; reading page frame numbers needs root, else it is not printed).
  This is streamd's RSS as one service, as if it ran alone on the box.

All are written as JSON. Both receivers are measured, one after the other: ``mqtt.receiver
= "process"`` (the default, two processes) and ``"thread"`` (one).

Run it with the interpreter you want measured. A development checkout's interpreter may
carry site hooks (``.pth`` files) that a user's install does not; a clean venv shows what a
user gets:

    python bench/memory.py
    python -m venv /tmp/userenv && /tmp/userenv/bin/pip install . \\
        && /tmp/userenv/bin/python bench/memory.py --out bench/results/memory-venv.json
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, add_settings, machine, process_tree

from streamd.tools.harness import PAGE, free_port, start_broker, start_daemon, wait_ready

FIELDS = ("Rss", "Pss")
PFN_MASK = (1 << 55) - 1  # bits 0-54 of a pagemap entry


def smaps(pid: int) -> dict[str, float]:
    """RSS and PSS of one process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            values[key] = int(rest.split()[0]) / 1024
    return values


def frames(pid: int) -> set[int]:
    """The physical page frames resident in ``pid``'s address space (empty without root:
    the kernel then reports every frame number as 0)."""
    found: set[int] = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            if line.endswith("[vsyscall]"):
                continue  # not readable through pagemap
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            pagemap.seek(lo // PAGE * 8)
            entries = pagemap.read((hi - lo) // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", entries):
                if entry >> 63 and entry & PFN_MASK:  # present, and a frame number we may see
                    found.add(entry & PFN_MASK)
    return found


def command(pid: int) -> str:
    """``streamd`` or ``streamd.runtime.mqtt.child``: the module the process runs."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return words[words.index("-m") + 1] if "-m" in words else words[0]


def measure(
    model: Path, receiver: str, settle_s: float, settings: dict[str, str]
) -> tuple[list[dict[str, Any]], float]:
    """RSS and PSS of every process of an idle ``streamd run`` with ``mqtt.receiver`` (and
    ``settings``, environment variables), and the tree's unique resident MB (0.0 when page
    frames cannot be read)."""
    rows = []
    unique: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        port, http_port = free_port(), free_port()
        broker, _ = start_broker(port, Path(tmp), "mosquitto")
        # run from an empty directory: ``python -m`` would import a checkout in the cwd
        env = {**settings, "STREAMD_MQTT__RECEIVER": receiver}
        daemon = start_daemon(model, port, http_port, extra_env=env, cwd=Path(tmp))
        try:
            wait_ready(http_port)
            time.sleep(settle_s)
            for pid in process_tree(daemon.pid):
                rows.append({"receiver": receiver, "process": command(pid), "pid": pid})
                rows[-1].update(smaps(pid))
                unique |= frames(pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            broker.terminate()
            broker.wait(10)
    return rows, len(unique) * PAGE / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="streamd's base memory, per process")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "default.onnx")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading")
    ap.add_argument(
        "--receivers",
        nargs="+",
        choices=["process", "thread"],
        default=["process", "thread"],
        help="mqtt.receiver settings to measure, one after the other",
    )
    add_settings(ap, "more settings for streamd, as environment variables (e.g. for N slots)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory.json")
    ns = ap.parse_args(argv)
    print(f"python: {sys.executable}")
    print(f"{'receiver':<9} {'process':<20} {'RSS MB':>7} {'PSS MB':>7} {'unique MB':>9}")
    rows, unique = [], {}
    settings = dict(ns.set)
    for receiver in ns.receivers:
        found, unique[receiver] = measure(ns.model, receiver, ns.settle, settings)
        total = {"receiver": receiver, "process": "total", "pid": 0}
        total.update({f: sum(r[f] for r in found) for f in FIELDS})
        for r in [*found, total]:
            line = f"{receiver:<9} {r['process']:<20} {r['Rss']:>7.1f} {r['Pss']:>7.1f}"
            if r is total and unique[receiver]:
                line += f" {unique[receiver]:>9.1f}"
            print(line)
        rows.extend(found)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "python": sys.executable, "processes": rows, "unique_mb": unique}
    ns.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
