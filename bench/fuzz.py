"""Fuzz the receive path at scale: arbitrary bytes, JSON of any shape, odd topics.

Every input goes through :class:`PayloadParser` (four parser configurations), and every
accepted sample through a real :class:`Pipeline` with the default model, in batches. Pass:
no exception other than ``PayloadError`` with a known reason, and every input accounted for
(accepted + each rejection = inputs; scored + warm-up + out-of-order + duplicate =
accepted). Prints a table and writes JSON.

    python bench/fuzz.py --count 1000000            # about a minute or two on a 2-core box
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import REASONS, PayloadParser, Sample
from streamd.core.pipeline import STATUS_NAMES, Pipeline, build_pipeline
from streamd.errors import PayloadError

REPO = Path(__file__).resolve().parent.parent
SPECIAL_NUMBERS: list[Any] = [
    0, -0.0, 1e308, -1e308, 10**400, -(10**30), 5e-324, 1.7e9, 1.7e12, 2**63, True, None,
]  # fmt: skip
SPECIAL_TEXT = ["NaN", "Infinity", "-Infinity", "1e400", "", " ", "\u0000", "é", "\ud800x"]
KEYS = ["ts", "value", "values", "temp", "rpm", "device", "", "x" * 300, "ts\u0000"]
TOPICS = [
    "sensors/a", "sensors/b/c", "", "/", "//", "sensors/", "sensors/#", "+/+", "a" * 70000,
    "sensors/\u00e9\u4e2d", "sensors/\u0000", "s/" * 50, "sensors/pump 1", "$SYS/x",
]  # fmt: skip


def rand_json(r: random.Random, depth: int = 0) -> Any:
    kind = r.randrange(9 if depth < 6 else 4)
    if kind == 0:
        return r.choice(SPECIAL_NUMBERS)
    if kind == 1:
        return r.uniform(-1e6, 1e6)
    if kind == 2:
        return r.choice(SPECIAL_TEXT) + "".join(chr(r.randrange(1, 0x2FFF)) for _ in range(3))
    if kind == 3:
        return r.randrange(-(2**70), 2**70)
    if kind in (4, 5):
        return {r.choice(KEYS): rand_json(r, depth + 1) for _ in range(r.randrange(4))}
    if kind == 6:
        return [rand_json(r, depth + 1) for _ in range(r.randrange(4))]
    if kind == 7:  # a plausible reading with a twist
        stamps = [1.7e9 + r.randrange(10**6), "2026-11-22T10:00:00Z", "yesterday"]
        doc: dict[str, Any] = {"ts": r.choice([*stamps, r.choice(SPECIAL_NUMBERS)])}
        doc[r.choice(["value", "values", "temp"])] = (
            {"temp": r.uniform(0, 50), "rpm": r.choice(SPECIAL_NUMBERS)}
            if r.random() < 0.3
            else r.uniform(0, 50)
        )
        return doc
    return {"value": rand_json(r, depth + 1)}


def valid_payload(r: random.Random, t: int) -> bytes:
    return json.dumps(
        {"ts": 1.7e9 + 60 * t, "value": 20 + 3 * math.sin(t / 30) + r.gauss(0, 0.3)}
    ).encode()


def mutate(r: random.Random, b: bytes) -> bytes:
    data = bytearray(b)
    for _ in range(r.randrange(1, 4)):
        op = r.randrange(4)
        if op == 0 and data:
            data[r.randrange(len(data))] = r.randrange(256)
        elif op == 1 and data:
            del data[r.randrange(len(data)) :]
        elif op == 2:
            data.insert(r.randrange(len(data) + 1), r.randrange(256))
        else:
            data += bytes(r.randrange(256) for _ in range(r.randrange(8)))
    return bytes(data)


def rand_input(r: random.Random, i: int) -> tuple[str, bytes]:
    topic = r.choice(TOPICS) if r.random() < 0.2 else f"sensors/s{r.randrange(50)}"
    kind = r.randrange(10)
    if kind < 3:  # well-formed: lets the pipeline see real traffic between the garbage
        return topic, valid_payload(r, i)
    if kind < 5:
        return topic, mutate(r, valid_payload(r, i))
    if kind < 6:
        return topic, bytes(r.randrange(256) for _ in range(r.randrange(64)))
    if kind < 7:  # deep nesting and huge payloads
        depth = r.choice([10, 100, 1000, 100_000])
        return topic, (b"[" * depth + b"1" + b"]" * depth) if r.random() < 0.5 else b"1" * 5000
    try:
        text = json.dumps(rand_json(r), allow_nan=True)
    except (ValueError, OverflowError):
        text = "{}"
    return topic, text.encode("utf-8", "surrogatepass")


def run(count: int, seed: int, batch: int = 512) -> dict[str, Any]:
    r = random.Random(seed)
    model = Forecaster(REPO / "models" / "default.onnx")
    max_bytes = Settings().mqtt.max_payload_bytes
    skew_s = Settings().state.max_clock_skew_s
    settings = Settings.model_validate(
        {"inference": {"mode": "window"}, "state": {"max_streams": 1000, "max_gap_s": math.inf}}
    )
    pipeline = build_pipeline(settings, model)
    parsers: list[tuple[str, PayloadParser, Callable[[Sample], bool]]] = [
        ("topic", PayloadParser(["value"], "topic", max_bytes, skew_s), lambda s: True),
        ("segment:-1", PayloadParser(["value"], "segment:-1", max_bytes, skew_s), lambda s: False),
        (
            "field:device",
            PayloadParser(["value"], "field:device", max_bytes, skew_s),
            lambda s: False,
        ),
        (
            "two features",
            PayloadParser(["temp", "rpm"], "topic", max_bytes, skew_s),
            lambda s: False,
        ),
    ]
    results: Counter[str] = Counter()
    status: Counter[str] = Counter()
    uncaught: list[str] = []
    pending: list[Sample] = []
    t0 = time.perf_counter()
    for i in range(count):
        topic, payload = rand_input(r, i)
        name, parser, to_pipeline = parsers[i % len(parsers)]
        try:
            sample = parser.parse(topic, payload, 1.7e9 + 60 * i)  # arrival: as valid ts
        except PayloadError as e:
            if e.reason not in REASONS:
                uncaught.append(f"{name}: unknown reason {e.reason!r} for {payload[:80]!r}")
            results[e.reason] += 1
            continue
        except Exception as e:  # the point is to catch anything
            uncaught.append(f"{name}: {type(e).__name__}: {e} for {topic[:40]!r} {payload[:80]!r}")
            continue
        results["accepted"] += 1
        if not all(math.isfinite(v) for v in sample.values):
            uncaught.append(f"{name}: non-finite value accepted: {payload[:80]!r}")
        if to_pipeline(sample):
            pending.append(sample)
            if len(pending) >= batch:
                status.update(_score(pipeline, pending, uncaught))
                pending = []
    if pending:
        status.update(_score(pipeline, pending, uncaught))
    seconds = time.perf_counter() - t0
    return {
        "inputs": count,
        "seed": seed,
        "seconds": round(seconds, 1),
        "inputs_per_second": round(count / seconds),
        "results": dict(results.most_common()),
        "pipeline": dict(status.most_common()),
        "pipeline_samples": sum(status.values()),
        "accounted": sum(results.values()) + len(uncaught) == count,
        "uncaught": len(uncaught),
        "uncaught_examples": uncaught[:20],
        "streams_held": pipeline.active_streams,
    }


def _score(pipeline: Pipeline, samples: list[Sample], uncaught: list[str]) -> Counter[str]:
    try:
        res = pipeline.process(samples)
    except Exception as e:
        uncaught.append(f"pipeline: {type(e).__name__}: {e}")
        return Counter()
    if not np.all(np.isnan(res.score) | ((res.score >= 0) & (res.score <= 1))):
        uncaught.append("pipeline: a score outside [0, 1]")
    return Counter(STATUS_NAMES[s] for s in res.status.tolist())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ns = ap.parse_args(argv)
    out = run(ns.count, ns.seed)
    rate = f"({out['seconds']} s, {out['inputs_per_second']:,}/s)"
    print(f"{'inputs':>24} {out['inputs']:>10,}   {rate}")
    for k, v in out["results"].items():
        print(f"{k:>24} {v:>10,}")
    print(f"{'to the pipeline':>24} {out['pipeline_samples']:>10,}   {out['pipeline']}")
    print(f"{'uncaught exceptions':>24} {out['uncaught']:>10,}")
    for ex in out["uncaught_examples"]:
        print("   ", ex)
    ns.out.mkdir(parents=True, exist_ok=True)
    path = ns.out / "fuzz.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0 if out["uncaught"] == 0 and out["accounted"] else 1


if __name__ == "__main__":
    sys.exit(main())
