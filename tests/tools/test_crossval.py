"""Cross-validation of a tuning grid: what is left out is never used to pick."""

from __future__ import annotations

import numpy as np

from streamd.tools.crossval import Run, crossvalidate

ROWS, WINDOW = 1000, (500, 550)


def detects(hit: bool) -> np.ndarray:
    s = np.zeros(ROWS)
    if hit:
        s[WINDOW[0] + 2] = 1.0
    return s


def run(name: str, hits: dict[str, bool]) -> Run:
    return Run(name, {f: detects(h) for f, h in hits.items()}, {f: [WINDOW] for f in hits})


# Candidate A finds the anomalies of category x only, B those of category y only.
FILES = ["x/a.csv", "x/b.csv", "x/c.csv", "y/d.csv"]
A = run("A", {f: f.startswith("x/") for f in FILES})
B = run("B", {f: f.startswith("y/") for f in FILES})


def test_a_pick_that_holds_on_every_fold_scores_its_in_sample_score() -> None:
    result = crossvalidate([A, B], by="source")
    assert set(result["picked"].values()) == {"A"}  # type: ignore[union-attr]
    in_sample = result["in_sample"]["A"]["standard"]  # type: ignore[index]
    assert result["cross_validated"]["standard"] == in_sample  # type: ignore[index]
    assert in_sample > 70


def test_leaving_out_a_category_picks_on_the_others_only() -> None:
    result = crossvalidate([A, B], by="category")
    # x is scored by the pick made on y (B) and y by the pick made on x (A): neither finds
    # anything it is scored on, so nothing is detected.
    assert result["picked"] == {"x": "B", "y": "A"}
    assert result["cross_validated"]["standard"] <= 0  # type: ignore[index]
    assert result["in_sample"]["A"]["standard"] > 70  # type: ignore[index]


def test_pieces_of_one_file_are_left_out_together() -> None:
    a = run("A", {"x/s_part0.csv": True, "x/s_part1.csv": True, "x/t.csv": False})
    b = run("B", {"x/s_part0.csv": False, "x/s_part1.csv": False, "x/t.csv": True})
    result = crossvalidate([a, b], by="source")
    assert sorted(result["picked"]) == ["x/s.csv", "x/t.csv"]  # type: ignore[arg-type]
    # leaving s out (both pieces), t decides: B, which misses both pieces of s
    assert result["picked"]["x/s.csv"] == "B"  # type: ignore[index]
