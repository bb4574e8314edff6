"""The online side works where torch cannot be imported (edge boxes carry no torch)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"No module named {name!r} (blocked by test)", name=name)
            return None
    sys.meta_path.insert(0, _Block())
    """
)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_inference_loads_and_runs_without_torch(tiny_model) -> None:
    path, _ = tiny_model
    r = _run(
        """
        import sys
        import streamd.core.inference, streamd.tools.inspect
        fc = streamd.core.inference.Forecaster(sys.argv[1])
        print(fc.self_test() <= 1e-4, "torch" in sys.modules)
        """,
        str(path),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


def test_train_without_torch_says_what_to_install(tmp_path: Path) -> None:
    r = _run(
        """
        import sys
        from streamd.cli import main
        sys.exit(main(["train", "--data", "x.csv", "--out", "m.onnx", "--report", "r"]))
        """
    )
    assert r.returncode == 3
    assert "needs the 'train' extra" in r.stderr and "torch==2.13.0" in r.stderr
    assert "Traceback" not in r.stderr
