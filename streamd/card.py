"""The model card: JSON in the ONNX metadata under the key ``streamd``.

It carries everything the runtime needs to use a model file and check it: features,
window, network shape, scaling, calibration statistics of normal prediction error and a
self-test window with its expected output. Training writes it; the daemon, ``inspect``
and ``replay`` read it. Keep ``FORMAT_VERSION`` in step with any change here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from streamd.scaling import Scaler

FORMAT_VERSION = 1
METADATA_KEY = "streamd"
CellKind = Literal["gru", "lstm"]


@dataclass(frozen=True)
class Calibration:
    """Statistics of the per-sample prediction error on held-back normal data.

    The error of one sample is the root mean square over features of
    ``y - y_hat`` in scaled units; ``threshold`` is the default alert level for
    that error (a high quantile, see training).
    """

    n: int
    mean: float
    std: float
    quantiles: dict[str, float]
    threshold: float


@dataclass(frozen=True)
class SelfTest:
    """A real window ``x: [window, features]`` (scaled) and the prediction the model gave."""

    x: list[list[float]]
    y_hat: list[float]
    tolerance: float = 1e-4


@dataclass(frozen=True)
class ModelCard:
    """Everything about a model file that is not its weights.

    ``per_stream_scaling``: the model was trained on each series scaled by its own statistics;
    ``scaler`` is then the identity and the runtime estimates each stream's scaling itself.
    """

    name: str
    version: str
    cell: CellKind
    features: list[str]
    window: int
    layers: int
    hidden_size: int
    scaler: Scaler
    calibration: Calibration
    self_test: SelfTest
    per_stream_scaling: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def state_size(self) -> int:
        """Width of ``h0``/``h_n``: the hidden size, doubled for an LSTM (h and c side by side)."""
        return self.hidden_size * (2 if self.cell == "lstm" else 1)

    def to_json(self) -> str:
        d = asdict(self)
        d["scaler"] = self.scaler.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse and check a card; raises ``ValueError`` naming what is wrong."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"card is not JSON ({e})") from e
        if not isinstance(d, dict):
            raise ValueError("card is not a JSON object")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"card format_version {version!r}, this streamd reads {FORMAT_VERSION}"
            )
        try:
            card = cls(
                name=str(d["name"]),
                version=str(d["version"]),
                cell=d["cell"],
                features=[str(f) for f in d["features"]],
                window=int(d["window"]),
                layers=int(d["layers"]),
                hidden_size=int(d["hidden_size"]),
                scaler=Scaler.from_dict(d["scaler"]),
                calibration=Calibration(**d["calibration"]),
                self_test=SelfTest(**d["self_test"]),
                per_stream_scaling=bool(d.get("per_stream_scaling", False)),
                training=dict(d.get("training", {})),
                created_at=str(d.get("created_at", "")),
            )
        except KeyError as e:
            raise ValueError(f"card lacks field {e.args[0]!r}") from e
        except TypeError as e:
            raise ValueError(f"card has a malformed field ({e})") from e
        card.check()
        return card

    def check(self) -> None:
        """Raise ``ValueError`` if the card is inconsistent with itself."""
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {self.cell!r}")
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError("features must be a non-empty list of distinct names")
        if self.window < 1 or self.layers < 1 or self.hidden_size < 1:
            raise ValueError("window, layers and hidden_size must be positive")
        if self.scaler.offset.shape != (len(self.features),):
            raise ValueError("scaling has a different number of features than the card")
        if not (self.calibration.std > 0 and self.calibration.threshold > 0):
            raise ValueError("calibration std and threshold must be positive")
        if len(self.self_test.x) != self.window or any(
            len(row) != len(self.features) for row in self.self_test.x
        ):
            raise ValueError("self_test.x must be [window, features]")
        if len(self.self_test.y_hat) != len(self.features):
            raise ValueError("self_test.y_hat must have one value per feature")
