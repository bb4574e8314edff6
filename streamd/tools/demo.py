"""The demo: broker, simulated sensors with injected anomalies, daemon, alerts, metrics.

    python -m streamd.tools.demo        (what ``bash scripts/demo.sh`` runs)

Starts a broker on a free loopback port (Mosquitto when installed, else the pure-Python
amqtt broker), the daemon with the default model, and the simulator; prints alerts as they
arrive, then which injected anomalies were alerted, the false alerts and a real scrape of
``/metrics``; stops everything it started.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamd.tools.harness import (
    DEFAULT_MODEL,
    AlertCollector,
    free_port,
    metric_values,
    scrape,
    start_broker,
    start_daemon,
    wait_ready,
)
from streamd.tools.simulate import publish
from streamd.tools.synth import Scenario, Truth, build

# Kinds a next-step forecaster can see; "stuck" holds the last value, which a forecaster
# predicts well (see docs/daemon.md), so the demo leaves it out of its recall figure.
DEMO_KINDS = ("spike", "level_shift", "drift", "noise_burst", "dropout")
# An alert counts for an injected anomaly if it starts between the anomaly's first sample
# and this many samples after its last (a forecaster needs a few samples to be sure).
MATCH_GRACE_SAMPLES = 12


def match(
    truth: list[Truth], alerts: list[dict[str, Any]], step_s: float
) -> tuple[list[Truth], list[dict[str, Any]]]:
    """(injected anomalies that were alerted, alerts that match no injected anomaly)."""
    opened = [a for a in alerts if a["state"] == "anomaly"]
    hit: list[Truth] = []
    used: set[int] = set()
    for t in truth:
        for i, a in enumerate(opened):
            if (
                a["stream"] == t.stream
                and t.start_ts <= a["ts"] <= t.end_ts + MATCH_GRACE_SAMPLES * step_s
            ):
                hit.append(t)
                used.add(i)
                break
    # Alerts inside a matched anomaly (re-entries) are not false; others are.
    false = [
        a
        for i, a in enumerate(opened)
        if i not in used
        and not any(
            a["stream"] == t.stream
            and t.start_ts <= a["ts"] <= t.end_ts + MATCH_GRACE_SAMPLES * step_s
            for t in truth
        )
    ]
    return hit, false


def picture(
    path: Path,
    scenario: Scenario,
    series: dict[str, np.ndarray],
    truth: list[Truth],
    alerts: list[dict[str, Any]],
) -> None:
    """One panel per stream: its values, the injected anomaly (shaded) and where streamd
    alerted (red: an anomaly opened, grey: resolved)."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    streams = list(series)
    cols = 2
    rows = (len(streams) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(14, 2.2 * rows), squeeze=False)
    by_stream = {t.stream: t for t in truth}
    for ax, stream in zip(axes.flat, streams, strict=False):
        values = series[stream]
        x = np.arange(len(values))
        ax.plot(x, values, lw=0.6, color="black")
        t = by_stream.get(stream)
        if t is not None:
            ax.axvspan(t.start_index, t.end_index, color="tab:orange", alpha=0.3, label=t.kind)
        for a in alerts:
            if a["stream"] != stream:
                continue
            i = round((a["ts"] - scenario.start_s) / scenario.step_s)
            if 0 <= i < len(values):
                opened = a["state"] == "anomaly"
                ax.plot(i, values[i], "v" if opened else "^", ms=7 if opened else 5,
                        color="tab:red" if opened else "tab:grey")  # fmt: skip
        ax.set_title(stream, fontsize=9)
        if t is not None:
            ax.legend(loc="upper left", fontsize=7)
    for ax in list(axes.flat)[len(streams) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="streamd demo")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--seconds", type=float, default=45.0, help="publishing time")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    p.add_argument("--picture", type=Path, default=Path("out/demo.png"), help="PNG to write")
    args = p.parse_args(argv)

    scenario = Scenario(
        streams=args.streams, samples=1100, kinds=DEMO_KINDS, anomaly_start=650, seed=1
    )
    rate = args.streams * scenario.samples / args.seconds
    work = Path(tempfile.mkdtemp(prefix="streamd-demo-"))
    mport, hport = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker, kind = start_broker(mport, work, args.broker)
        procs.append(broker)
        print(f"broker: {kind} on 127.0.0.1:{mport}")
        daemon = start_daemon(
            args.model,
            mport,
            hport,
            log_path=work / "streamd.log",
        )
        procs.append(daemon)
        wait_ready(hport)
        print(
            f"daemon: streamd run, model {args.model.name}, metrics on http://127.0.0.1:{hport}/metrics"
        )
        collector = AlertCollector(mport, echo=True)
        series, truth = build(scenario)
        print(
            f"simulate: {args.streams} streams x {scenario.samples} samples at {rate:.0f} msg/s, "
            f"{len(truth)} injected anomalies ({', '.join(DEMO_KINDS)}); alerts as they arrive:"
        )
        counts = publish(
            scenario, host="127.0.0.1", port=mport, rate=rate, qos=1, max_seconds=args.seconds * 3
        )
        time.sleep(3.0)
        collector.stop()
        hit, false = match(truth, collector.alerts, scenario.step_s)
        picture(args.picture, scenario, series, truth, collector.alerts)
        print(f"\ninjected anomalies alerted: {len(hit)}/{len(truth)}")
        for t in truth:
            mark = "alerted" if t in hit else "MISSED "
            print(f"  {mark}  {t.kind:<12} {t.stream:<28} samples {t.start_index}-{t.end_index}")
        print(f"false alerts: {len(false)}")
        for a in false:
            sample = int((a["ts"] - scenario.start_s) / scenario.step_s)
            print(f"  {a['stream']} at sample {sample} score {a['score']:.2f}")
        m = metric_values(scrape(hport))
        rejected = sum(
            v
            for k, v in m.items()
            if k.startswith("streamd_messages_total") and 'result="accepted"' not in k
        )
        lat_n = m.get("streamd_end_to_end_latency_seconds_count", 0.0)
        lat_mean = m.get("streamd_end_to_end_latency_seconds_sum", 0.0) / max(1.0, lat_n)
        print("\nfrom /metrics:")
        accepted = m.get('streamd_messages_total{result="accepted"}', 0.0)
        opened = m.get('streamd_alerts_published_total{state="anomaly"}', 0.0)
        resolved = m.get('streamd_alerts_published_total{state="resolved"}', 0.0)
        print(
            f"  published {counts['published']}, accepted {accepted:.0f}, rejected {rejected:.0f}"
        )
        print(
            f"  anomalies {m.get('streamd_anomalies_total', 0):.0f}, alerts published "
            f"{opened:.0f} anomaly / {resolved:.0f} resolved"
        )
        print(
            f"  active streams {m.get('streamd_active_streams', 0):.0f}, mean receipt-to-verdict "
            f"latency {lat_mean * 1000:.1f} ms, batches {m.get('streamd_batch_size_count', 0):.0f}"
        )
        print(f"\npicture of every stream, its injected anomaly and its alerts: {args.picture}")
        return 0
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
