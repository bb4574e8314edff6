"""``streamd simulate``: publish synthetic sensor streams with injected anomalies."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamd.cli.common import SubParsers


def cmd_simulate(ns: argparse.Namespace) -> int:
    from streamd.tools.simulate import publish
    from streamd.tools.synth import Scenario

    scenario = Scenario(
        streams=ns.streams,
        samples=ns.samples,
        step_s=ns.step_s,
        kinds=tuple(ns.kinds),
        anomaly_start=ns.anomaly_start,
        anomaly_length=ns.anomaly_length,
        magnitude=ns.magnitude,
        seed=ns.seed,
        topic_prefix=ns.topic_prefix,
    )
    counts = publish(
        scenario,
        host=ns.host,
        port=ns.port,
        rate=ns.rate,
        qos=ns.qos,
        max_seconds=ns.max_seconds,
        truth_path=Path(ns.truth) if ns.truth else None,
    )
    print(
        f"published {counts['published']} messages on {counts['streams']} streams with "
        f"{counts['anomalies']} injected anomalies in {counts['seconds']} s"
    )
    return 0


def add_simulate(sub: SubParsers) -> None:
    from streamd.tools.synth import ANOMALY_KINDS
    from streamd.tools.synth import Scenario as S

    p = sub.add_parser("simulate", help="publish synthetic sensor streams with injected anomalies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--streams", type=int, default=S.streams)
    p.add_argument("--samples", type=int, default=S.samples, help="samples per stream (bound)")
    p.add_argument("--rate", type=float, default=200.0, help="messages/s in total (0: max)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="wall-time bound")
    p.add_argument("--step-s", type=float, default=S.step_s, help="simulated s between samples")
    p.add_argument("--kinds", nargs="*", default=list(S.kinds), choices=ANOMALY_KINDS)
    p.add_argument("--anomaly-start", type=int, default=S.anomaly_start)
    p.add_argument("--anomaly-length", type=int, default=S.anomaly_length)
    p.add_argument("--magnitude", type=float, default=S.magnitude, help="in stream std devs")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--seed", type=int, default=S.seed)
    p.add_argument("--topic-prefix", default=S.topic_prefix)
    p.add_argument("--truth", help="write the injected anomalies to this JSON file")
    p.set_defaults(func=cmd_simulate)
