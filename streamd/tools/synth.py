"""Synthetic "normal sensor" series and injected anomalies.

One generator serves two users: ``models/`` trains the default model on its normal
series, and ``streamd simulate`` publishes a :class:`Scenario` of them with anomalies
injected (:func:`build` gives its series and ground truth). A series is a
level, a daily cycle, a short cycle, a slow drift and Gaussian noise; the profiles
differ in scale on purpose, as real sensors do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamd.core.arrays import F64

DAY_S = 86_400.0
ANOMALY_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "dropout")


@dataclass(frozen=True)
class SensorProfile:
    """Shape of one kind of normal sensor signal, in its own units."""

    name: str
    level: float
    daily_amplitude: float
    cycle_amplitude: float
    cycle_period_s: float
    drift_per_day: float
    noise: float


PROFILES: tuple[SensorProfile, ...] = (
    SensorProfile("temperature", 21.0, 3.0, 0.6, 1_800.0, 0.2, 0.15),
    SensorProfile("humidity", 55.0, 8.0, 1.5, 2_700.0, -0.5, 0.5),
    SensorProfile("pressure", 1_013.0, 2.0, 0.8, 3_600.0, 0.3, 0.2),
    SensorProfile("power_kw", 40.0, 15.0, 4.0, 900.0, 0.5, 1.2),
    SensorProfile("flow_lpm", 120.0, 25.0, 6.0, 1_200.0, -1.0, 2.0),
    SensorProfile("vibration_mm_s", 4.0, 0.8, 0.5, 600.0, 0.02, 0.12),
)


def normal_series(
    profile: SensorProfile, n: int, step_s: float, rng: np.random.Generator, start_s: float = 0.0
) -> F64:
    """``n`` samples every ``step_s`` seconds of ``profile``, phases drawn from ``rng``.

    >>> v = normal_series(PROFILES[0], 10, 60.0, np.random.default_rng(0))
    >>> v.shape
    (10,)
    """
    t = start_s + step_s * np.arange(n, dtype=np.float64)
    daily_phase, cycle_phase = rng.uniform(0.0, 2 * np.pi, size=2)
    jitter = rng.uniform(0.8, 1.2, size=3)  # no two streams of a profile are identical
    level = profile.level * rng.uniform(0.95, 1.05)
    series: F64 = (
        level
        + jitter[0] * profile.daily_amplitude * np.sin(2 * np.pi * t / DAY_S + daily_phase)
        + jitter[1]
        * profile.cycle_amplitude
        * np.sin(2 * np.pi * t / (profile.cycle_period_s * jitter[2]) + cycle_phase)
        + profile.drift_per_day * (t - start_s) / DAY_S
        + profile.noise * rng.standard_normal(n)
    )
    return series


@dataclass(frozen=True)
class Injection:
    """One injected anomaly: rows ``[start, start + length)`` of a series."""

    kind: str
    start: int
    length: int
    magnitude: float


def inject(values: F64, injection: Injection, rng: np.random.Generator) -> F64:
    """Return a copy of ``values`` with ``injection`` applied.

    ``magnitude`` is in units of the series' own standard deviation, so one scenario
    fits every profile.
    """
    if injection.kind not in ANOMALY_KINDS:
        raise ValueError(f"unknown anomaly kind {injection.kind!r}; kinds: {ANOMALY_KINDS}")
    out = values.copy()
    s, e = injection.start, min(len(values), injection.start + injection.length)
    if s >= e:
        return out
    size = injection.magnitude * float(np.std(values))
    n = e - s
    if injection.kind == "spike":
        out[s:e] += size * rng.choice((-1.0, 1.0))
    elif injection.kind == "level_shift":
        out[s:e] += size
    elif injection.kind == "drift":
        out[s:e] += size * np.linspace(0.0, 1.0, n)
    elif injection.kind == "stuck":
        out[s:e] = out[s - 1] if s > 0 else out[s]
    elif injection.kind == "noise_burst":
        out[s:e] += size * rng.standard_normal(n)
    elif injection.kind == "dropout":
        out[s:e] = 0.0
    return out


@dataclass(frozen=True)
class Scenario:
    """What to publish."""

    streams: int = 6
    samples: int = 1200
    step_s: float = 300.0
    start_s: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    kinds: tuple[str, ...] = ANOMALY_KINDS
    anomaly_start: int = 500  # no anomaly before this sample (warm-up and history)
    anomaly_end: int | None = None  # no anomaly past this sample (None: the last one)
    anomaly_length: int = 24
    magnitude: float = 3.0  # in units of the stream's standard deviation
    seed: int = 0
    topic_prefix: str = "sensors"


@dataclass(frozen=True)
class Truth:
    stream: str
    topic: str
    kind: str
    start_index: int
    end_index: int
    start_ts: float
    end_ts: float


def build(scenario: Scenario) -> tuple[dict[str, np.ndarray], list[Truth]]:
    """Series per topic and the injected anomalies; one anomaly per stream, kinds in turn."""
    rng = np.random.default_rng(scenario.seed)
    series: dict[str, np.ndarray] = {}
    truth: list[Truth] = []
    for i in range(scenario.streams):
        profile = PROFILES[i % len(PROFILES)]
        topic = f"{scenario.topic_prefix}/{profile.name}-{i:03d}"
        values = normal_series(profile, scenario.samples, scenario.step_s, rng, scenario.start_s)
        end = min(scenario.samples, scenario.anomaly_end or scenario.samples)
        if scenario.kinds and scenario.anomaly_start + scenario.anomaly_length < end:
            kind = scenario.kinds[i % len(scenario.kinds)]
            start = int(rng.integers(scenario.anomaly_start, end - scenario.anomaly_length))
            length = scenario.anomaly_length
            magnitude = scenario.magnitude * (2.0 if kind == "spike" else 1.0)
            values = inject(values, Injection(kind, start, length, magnitude), rng)
            end = start + length - 1
            truth.append(
                Truth(
                    topic,
                    topic,
                    kind,
                    start,
                    end,
                    scenario.start_s + start * scenario.step_s,
                    scenario.start_s + end * scenario.step_s,
                )
            )
        series[topic] = values
    return series, truth
