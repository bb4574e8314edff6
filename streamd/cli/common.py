"""What the subcommands share: argument helpers and the train extra's hint."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TypeAlias

from streamd.core.timefeatures import PERIODS_S

# argparse has no public name for what add_subparsers returns
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
TRAIN_EXTRA_HINT = (
    "needs the 'train' extra: pip install torch==2.13.0 && pip install 'streamd[train]'"
)
TRAIN_MODULES = {"torch", "onnx", "onnxscript", "matplotlib", "tqdm"}


def missing_extra(e: ImportError) -> bool:
    """Whether ``e`` is a module of the ``train`` extra that is not installed."""
    return bool(e.name) and str(e.name).split(".")[0] in TRAIN_MODULES


def mode_override(ns: argparse.Namespace) -> dict[str, dict[str, object]]:
    """``--mode`` as a settings override (flags beat file and environment)."""
    return {"inference": {"mode": ns.mode}} if ns.mode else {}


def add_time_features(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--time-features",
        nargs="+",
        choices=sorted(PERIODS_S),
        metavar="PERIOD",
        help=f"also feed the model each sample's phase in these periods: day, week {what}",
    )


def writable(path: Path, flag: str, *, directory: bool = False) -> Path:
    """``path`` if a file (or with ``directory``, a folder) can be written there, else
    :class:`ConfigError` naming ``flag``: checked before the work, not after it."""
    from streamd.errors import ConfigError

    if path.exists() and path.is_dir() != directory:
        raise ConfigError(flag, f"{path} is {'not ' if directory else ''}a directory")
    existing = path if path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(flag, f"cannot write {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(flag, f"cannot write {path}: {existing} is not writable")
    return path
