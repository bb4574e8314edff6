"""The training loop: Adam, MSE, mini-batches, early stopping, gradient clipping.

Kept as one readable function with two named helpers (one epoch, one evaluation).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type stubs

from training.data import Windows
from training.model import GRUForecaster
from training.options import LoopConfig


@dataclass
class History:
    """Per-epoch losses and the outcome, for the report and the card."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Make a CPU run repeatable: same seed, same weights, same batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def every_step_loss(
    model: GRUForecaster, x: torch.Tensor, y: torch.Tensor, window: int
) -> torch.Tensor:
    """Long windows: the mean error of the forecasts after step ``window`` onwards, each
    against the next row (the window's own next input, then its target)."""
    f = model.config.features
    targets = torch.cat([x[:, window:, :f], y[:, None, :]], dim=1)
    y_hat = model.forecast_every_step(x)[:, window - 1 :, :]
    return torch.mean((y_hat - targets) ** 2)


def _train_epoch(
    model: GRUForecaster,
    data: Windows,
    opt: torch.optim.Optimizer,
    cfg: LoopConfig,
    gen: torch.Generator,
    window: int,
) -> float:
    """One pass over ``data``; windows longer than ``window`` are trained on every step."""
    model.train()
    loss_fn = nn.MSELoss()
    x_all, y_all = torch.from_numpy(data.x), torch.from_numpy(data.y)
    order = torch.randperm(len(data), generator=gen)  # shuffles windows inside the train part only
    total = 0.0
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        x, y = x_all[idx], y_all[idx]
        opt.zero_grad()
        if x.shape[1] > window:
            loss = every_step_loss(model, x, y, window)
        else:
            y_hat, _ = model(x, model.zero_state(len(idx)))
            loss = loss_fn(y_hat, y)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward untyped
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        total += loss.item() * len(idx)
    return total / max(1, len(order))


@torch.no_grad()
def predict(model: GRUForecaster, data: Windows, batch_size: int = 1024) -> np.ndarray:
    """Predictions ``[n, features]`` for all windows of ``data`` (eval mode, zero state)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = torch.from_numpy(data.x[start : start + batch_size])
        y_hat, _ = model(x, model.zero_state(len(x)))
        out.append(y_hat.numpy())
    if not out:
        return np.zeros((0, data.y.shape[1]), np.float32)
    return np.concatenate(out)


def _evaluate(model: GRUForecaster, data: Windows) -> float:
    return float(np.mean((predict(model, data) - data.y) ** 2))


def fit(model: GRUForecaster, train: Windows, val: Windows, cfg: LoopConfig) -> History:
    """Train ``model`` in place; restore the weights of the best validation epoch."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    hist = History()
    best_state = copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc="epochs", unit="epoch", disable=not cfg.progress)
    for epoch in bar:
        tr = _train_epoch(model, train, opt, cfg, gen, val.x.shape[1])
        va = _evaluate(model, val)
        hist.train_loss.append(tr)
        hist.val_loss.append(va)
        bar.set_postfix(train=f"{tr:.3g}", val=f"{va:.3g}")
        if va < hist.best_val_loss:
            hist.best_val_loss, hist.best_epoch = va, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - hist.best_epoch >= cfg.patience:
            hist.stopped_early = True
            bar.set_description(f"stopped early at epoch {epoch} (best {hist.best_epoch})")
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - t0
    return hist
