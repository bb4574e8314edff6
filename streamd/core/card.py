"""The model card: JSON in the ONNX metadata under the key ``streamd``.

It carries everything the runtime needs to use a model file and check it: features,
time features, window, network shape, scaling, calibration statistics of normal prediction
error and a self-test window with its expected output. Training writes it; the daemon,
``inspect`` and ``replay`` read it. Keep ``FORMAT_VERSION`` in step with any change here.

Format 2 added ``time_features``. A card without them is still written as format 1, so
models that do not use them (the shipped default among them) stay readable by older streamd
releases; one that uses them is format 2, which an older release refuses by name instead of
feeding the model inputs of the wrong width.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from streamd.core import timefeatures
from streamd.core.scaling import Scaler

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
METADATA_KEY = "streamd"
# Sanity bounds: a card beyond them is crafted or corrupt, and serving it would allocate
# per-stream arrays of its size (window x inputs x streams) before anything else fails.
MAX_WINDOW = 4096
MAX_LAYERS = 16
MAX_HIDDEN = 4096
MAX_FEATURES = 256
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
    """A real window ``x: [window, inputs]`` (scaled) and the prediction the model gave."""

    x: list[list[float]]
    y_hat: list[float]
    tolerance: float = 1e-4


@dataclass(frozen=True)
class ModelCard:
    """Everything about a model file that is not its weights.

    ``per_stream_scaling``: the model was trained on each series scaled by its own statistics;
    ``scaler`` is then the identity and the runtime estimates each stream's scaling itself.
    ``time_features``: periods (:mod:`streamd.core.timefeatures`) whose phase the model reads
    after the scaled features, so the model's input has :attr:`n_inputs` columns while its
    prediction has one per feature.
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
    time_features: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def format_version(self) -> int:
        """The oldest card format that can express this card (see the module docstring)."""
        return FORMAT_VERSION if self.time_features else 1

    @property
    def n_inputs(self) -> int:
        """Columns of the model's input ``x``: the features, then the time features."""
        return len(self.features) + timefeatures.width(self.time_features)

    @property
    def state_size(self) -> int:
        """Width of ``h0``/``h_n``: the hidden size, doubled for an LSTM (h and c side by side)."""
        return self.hidden_size * (2 if self.cell == "lstm" else 1)

    def to_json(self) -> str:
        d = asdict(self)
        d["scaler"] = self.scaler.to_dict()
        d["format_version"] = self.format_version
        if not self.time_features:
            del d["time_features"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse and check a card; raises ``ValueError`` naming what is wrong."""
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"card is not JSON ({type(e).__name__}: {e})") from e
        if not isinstance(d, dict):
            raise ValueError("card is not a JSON object")
        version = d.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"card format_version {version!r}, this streamd reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))}"
            )
        try:
            card = cls(
                name=str(d["name"]),
                version=str(d["version"]),
                cell=d["cell"],
                features=[str(f) for f in d["features"]],
                window=_integer(d["window"], "window"),
                layers=_integer(d["layers"], "layers"),
                hidden_size=_integer(d["hidden_size"], "hidden_size"),
                scaler=Scaler.from_dict(d["scaler"]),
                calibration=_calibration(d["calibration"]),
                self_test=_self_test(d["self_test"]),
                per_stream_scaling=bool(d.get("per_stream_scaling", False)),
                time_features=[str(t) for t in d.get("time_features", [])],
                training=dict(d.get("training", {})),
                created_at=str(d.get("created_at", "")),
            )
        except KeyError as e:
            raise ValueError(f"card lacks field {e.args[0]!r}") from e
        except (TypeError, AttributeError, OverflowError) as e:
            raise ValueError(f"card has a malformed field ({type(e).__name__}: {e})") from e
        card.check()
        return card

    def check(self) -> None:
        """Raise ``ValueError`` if the card is inconsistent with itself."""
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {self.cell!r}")
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError("features must be a non-empty list of distinct names")
        for name, value, top in (
            ("window", self.window, MAX_WINDOW),
            ("layers", self.layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            ("features", len(self.features), MAX_FEATURES),
        ):
            if not 1 <= value <= top:
                raise ValueError(f"{name} must be 1..{top}, not {value}")
        timefeatures.check_names(self.time_features)
        if self.scaler.offset.shape != (len(self.features),):
            raise ValueError("scaling has a different number of features than the card")
        if not (self.calibration.std > 0 and self.calibration.threshold > 0):
            raise ValueError("calibration std and threshold must be positive")
        if len(self.self_test.x) != self.window or any(
            len(row) != self.n_inputs for row in self.self_test.x
        ):
            raise ValueError("self_test.x must be [window, features + time feature columns]")
        if len(self.self_test.y_hat) != len(self.features):
            raise ValueError("self_test.y_hat must have one value per feature")


def _integer(v: Any, name: str) -> int:
    """A whole number from JSON, or ``ValueError`` naming the field (``1e400`` is inf)."""
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (isinstance(v, float) and not (math.isfinite(v) and v.is_integer()))
    ):
        raise ValueError(f"{name} must be a whole number, not {v!r}")
    return int(v)


def _finite(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, not {v!r}")
    return float(v)


def _calibration(d: Any) -> Calibration:
    if not isinstance(d, dict):
        raise ValueError("calibration must be an object")
    quantiles = d.get("quantiles", {})
    if not isinstance(quantiles, dict):
        raise ValueError("calibration.quantiles must be an object")
    return Calibration(
        n=_integer(d["n"], "calibration.n"),
        mean=_finite(d["mean"], "calibration.mean"),
        std=_finite(d["std"], "calibration.std"),
        quantiles={str(k): _finite(v, f"calibration.quantiles.{k}") for k, v in quantiles.items()},
        threshold=_finite(d["threshold"], "calibration.threshold"),
    )


def _self_test(d: Any) -> SelfTest:
    if not isinstance(d, dict):
        raise ValueError("self_test must be an object")
    x, y_hat = d["x"], d["y_hat"]
    if not isinstance(x, list) or not all(isinstance(row, list) for row in x):
        raise ValueError("self_test.x must be a list of rows")
    if not isinstance(y_hat, list):
        raise ValueError("self_test.y_hat must be a list")
    return SelfTest(
        x=[[_finite(v, "self_test.x") for v in row] for row in x],
        y_hat=[_finite(v, "self_test.y_hat") for v in y_hat],
        tolerance=_finite(d.get("tolerance", SelfTest.tolerance), "self_test.tolerance"),
    )
