"""The layout is the architecture: the wings import only downwards (docs/architecture.md).

Two checks. What importing a wing really loads (a fresh interpreter, ``sys.modules``): the
core loads no MQTT client, Prometheus client or HTTP server, and nothing of the runtime or
the tools; replay and evaluate load no MQTT client, torch or training. And what every
module says it imports, lazily inside a function too (its syntax tree): core -> runtime or
tools, tools -> runtime, and anything of ``streamd`` -> training or torch (but the CLI's
lazy imports for ``train`` and ``evaluate --train-head``) fail the test.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "streamd"


def modules(wing: str) -> list[str]:
    root = PACKAGE / wing
    return sorted(
        "streamd."
        + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py")
    )


def loaded_by(*names: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``names``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(names)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(json.loads(out.stdout))


def family(loaded: set[str], *roots: str) -> set[str]:
    return {m for m in loaded if any(m == r or m.startswith(r + ".") for r in roots)}


def test_the_core_loads_no_io_and_nothing_above_it() -> None:
    core = modules("core")
    assert len(core) >= 12
    loaded = loaded_by(*core)
    io = family(loaded, "paho", "prometheus_client", "http.server", "socketserver")
    above = family(loaded, "streamd.runtime", "streamd.tools", "streamd.cli", "training", "torch")
    assert io == set() and above == set()


@pytest.mark.parametrize("tool", ["streamd.tools.replay", "streamd.tools.evaluate"])
def test_replay_and_evaluate_load_no_mqtt_client_torch_or_training(tool: str) -> None:
    loaded = loaded_by(tool)
    assert family(loaded, "paho", "torch", "training", "streamd.runtime") == set()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import statement in ``path``, wherever it stands."""
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


# (importing wing, forbidden prefixes)
RULES = [
    ("core", ("streamd.runtime", "streamd.tools", "streamd.cli")),
    ("tools", ("streamd.runtime", "streamd.cli")),
    ("runtime", ("streamd.tools", "streamd.cli")),
]


@pytest.mark.parametrize(("wing", "forbidden"), RULES, ids=[w for w, _ in RULES])
def test_no_import_statement_crosses_a_wing(wing: str, forbidden: tuple[str, ...]) -> None:
    crossings = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in (PACKAGE / wing).rglob("*.py")
        for line, name in imports_of(path)
        if name.startswith(forbidden)
    ]
    assert crossings == []


def test_only_the_cli_reaches_training_and_only_training_imports_torch() -> None:
    """streamd never imports training or torch, but for the CLI's two lazy imports; training
    itself imports streamd's core (and the synthetic sensors of tools.synth), not above."""
    offending = []
    for path in PACKAGE.rglob("*.py"):
        for line, name in imports_of(path):
            if name.split(".")[0] in ("training", "torch"):
                if path.parent.name == "cli" and path.stem in ("train", "evaluate"):
                    continue
                offending.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    for path in (REPO / "training").rglob("*.py"):
        for line, name in imports_of(path):
            if name.startswith(("streamd.runtime", "streamd.cli")) or (
                name.startswith("streamd.tools") and not name.startswith("streamd.tools.synth")
            ):
                offending.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert offending == []
