"""What training accepts, with its defaults: plain values, importable without torch.

``streamd train``'s flags take their defaults from here, so the CLI can show them on a box
without the ``train`` extra, and a default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from streamd.core.scaling import ScalingKind


@dataclass(frozen=True)
class LoopConfig:
    """How long and how hard to train."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    clip_norm: float = 1.0
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``streamd train`` accepts."""

    data: list[str]
    out: Path
    report_dir: Path
    features: list[str] | None = None
    window: int = 32
    # train windows this long (0: the window), trained on every step from `window` on, so the
    # model also forecasts from a long-carried state (`step` mode)
    train_span: int = 0
    hidden_size: int = 32
    layers: int = 2
    dropout: float = 0.0
    cell: Literal["gru", "lstm"] = "gru"
    scaling: ScalingKind | None = None  # minmax; with per_stream_scaling the running standard
    per_stream_scaling: bool = False
    time_features: list[str] = field(default_factory=list)
    head_fraction: float = 1.0
    validation_fraction: float = 0.15
    calibration_fraction: float = 0.15
    loop: LoopConfig = field(default_factory=LoopConfig)
    name: str = ""
