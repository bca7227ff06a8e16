"""The detection harness runs end to end in quick mode and writes both tables."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "detection.py"


def load_harness():  # type: ignore[no-untyped-def]
    """Import benchmarks/detection.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("kpiguard_detection_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    """--quick writes DETECTION-style markdown with the exact table, the stable table and every change table."""
    out = tmp_path / "DETECTION.md"
    assert load_harness().main(["--quick", "--jobs", "1", "--seed", "7", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    for heading in (
        "## Targets (issue 9), measured in this run",
        "## 1. Stable success rates, exact",
        "## 2. Stable streams, simulated",
        "### 3a. Plain rule (`guard: none`)",
        "### 3b. Evidence guard (`guard: evidence`)",
        "### 3c. Sequential guard (`guard: sequential`)",
        "### 3d. Combined guard (`guard: combined`)",
        "### 3e. Oracle: the lower bound",
        "## Why these guards",
    ):
        assert heading in text
    assert "| seed | 7 |" in text
    # Each change table has a row per stream, for the same streams.
    plain = text.split("### 3a.")[1].split("### 3b.")[0]
    evidence = text.split("### 3b.")[1].split("### 3c.")[0]
    sequential = text.split("### 3c.")[1].split("### 3d.")[0]
    combined = text.split("### 3d.")[1].split("### 3e.")[0]
    oracle = text.split("### 3e.")[1].split("## 4.")[0]
    rows = [line.split("|")[1] for line in plain.splitlines() if line.startswith("| scenario")]
    for table in (evidence, sequential, combined):
        assert rows and rows == [line.split("|")[1] for line in table.splitlines() if line.startswith("| scenario")]
    assert any("scenario 2" in row for row in rows)
    # The oracle runs on the real drops only: scenarios 1 and 3, not the sub-threshold scenario 2.
    oracle_rows = [line.split("|")[1].strip() for line in oracle.splitlines() if line.startswith("| scenario")]
    assert oracle_rows == ["scenario 1 0.95->0.60", "scenario 3 mean +500->-300 sd 250"]
    assert "Targets met (the rows that apply to every guard): **evidence" in text
    assert "**combined" in text.split("Targets met")[1].split("\n")[0]


def test_oracle_run_length_is_exact() -> None:
    """The oracle's Bernoulli run length (Wald over regeneration cycles) matches the Markov chain's, solved directly."""
    harness = load_harness()
    # p1 = 0.5 and p0 with p0^2 (1 - p0) = 1/8 make a failure add exactly twice what a success takes off,
    # so the statistic lives on a finite lattice and the run length solves a small linear system.
    lo, hi = 0.6, 0.95
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * mid * (1 - mid) > 0.125 else (lo, mid)
    p0, p1, h = lo, 0.5, 6.0
    step = math.log(p0 / p1)
    assert math.log((1 - p1) / (1 - p0)) == pytest.approx(2 * step, rel=1e-9)
    top = math.ceil(h / step - 1e-9)  # states 0 .. top-1 (in steps); reaching top alarms
    # L(i) = 1 + p0 L(max(0, i - 1)) + (1 - p0) L(i + 2), L(>= top) = 0: Gauss-Seidel to the fixed point.
    run = [0.0] * (top + 2)
    for _ in range(200_000):
        for i in range(top):
            run[i] = 1 + p0 * run[max(0, i - 1)] + (1 - p0) * (run[i + 2] if i + 2 < top else 0.0)
    assert harness.bernoulli_cusum_arl(p0, p1, h) == pytest.approx(run[0], rel=1e-6)


def test_oracle_boundary_meets_its_false_alarm_rate() -> None:
    """The oracle's boundary is the smallest with a mean run length of at least 100,000 events at the old level."""
    harness = load_harness()
    oracle = harness.oracle_for(0.85, 0.85 * (1 - 1.5 * 0.25), 0.0)
    assert harness.bernoulli_cusum_arl(0.85, oracle.after, oracle.h) >= 100_000
    assert harness.bernoulli_cusum_arl(0.85, oracle.after, oracle.h - 0.05) < 100_000


def test_quick_run_is_deterministic(tmp_path: Path) -> None:
    """The same seed gives the same tables (everything but the timing lines)."""
    harness = load_harness()
    texts = []
    for name in ("a.md", "b.md"):
        out = tmp_path / name
        harness.main(["--quick", "--jobs", "1", "--seed", "3", "--out", str(out)])
        texts.append(
            [
                line
                for line in out.read_text(encoding="utf-8").splitlines()
                if not line.startswith(
                    ("| date", "| events simulated", "| evaluate() cost", "| command", "| CPU time")
                )
            ]
        )
    assert texts[0] == texts[1]
