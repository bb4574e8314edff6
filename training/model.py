"""The forecaster network: stacked GRU (or LSTM) layers and a linear head.

``forward(x, h0) -> (y_hat, h_n)`` follows the ONNX contract in DESIGN.md, so the module
exports as it is: ``x: [batch, time, features]``, ``h0: [layers, batch, state]``,
``y_hat: [batch, features]`` (the next step), ``h_n: [layers, batch, state]``. For an LSTM
the state holds ``h`` and ``c`` side by side (``state = 2 * hidden``), so one contract
serves both cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class ForecasterConfig:
    """Shape of the network; stored in the model card so the file describes itself."""

    features: int
    time_inputs: int = 0  # extra input columns (time features), not predicted
    hidden_size: int = 64
    layers: int = 2
    dropout: float = 0.0
    cell: Literal["gru", "lstm"] = "gru"

    @property
    def inputs(self) -> int:
        return self.features + self.time_inputs

    @property
    def state_size(self) -> int:
        return self.hidden_size * (2 if self.cell == "lstm" else 1)


class GRUForecaster(nn.Module):
    """Predict the next step of all features from a window (or one step and a carried state).

    The input may carry time features after the features (``config.time_inputs`` columns);
    they inform the forecast but are not predicted.
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        rnn_cls = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(
            input_size=config.inputs,
            hidden_size=config.hidden_size,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, config.features)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.config.layers, batch, self.config.state_size)

    def _recur(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent layers' output at every step and the final state (LSTM: ``h, c``
        side by side)."""
        if self.config.cell == "gru":
            out, h_n = self.rnn(x, h0)
        else:
            h, c = torch.split(h0, self.config.hidden_size, dim=2)
            out, (h_last, c_last) = self.rnn(x, (h.contiguous(), c.contiguous()))
            h_n = torch.cat((h_last, c_last), dim=2)
        return out, h_n

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h_n = self._recur(x, h0)
        return self.head(out[:, -1, :]), h_n

    def forecast_every_step(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, time, features]``: the forecast after every step of ``x`` from a zero
        state (training on long windows; the exported graph keeps :meth:`forward`)."""
        out, _ = self._recur(x, self.zero_state(len(x)))
        y_hat: torch.Tensor = self.head(out)
        return y_hat


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
