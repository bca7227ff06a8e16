"""The detection harness runs end to end in quick mode and writes both tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
    """--quick writes DETECTION-style markdown with the exact table, the stable table and both change tables."""
    out = tmp_path / "DETECTION.md"
    assert load_harness().main(["--quick", "--jobs", "1", "--seed", "7", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    for heading in (
        "## Targets (issue 9), measured in this run",
        "## 1. Stable success rates, exact",
        "## 2. Stable streams, simulated",
        "### 3a. Plain rule (`guard: none`)",
        "### 3b. Guard (`guard: evidence`)",
        "## Why this guard",
    ):
        assert heading in text
    assert "| seed | 7 |" in text
    # Each change table has a row per stream, for the same streams.
    plain = text.split("### 3a.")[1].split("### 3b.")[0]
    guard = text.split("### 3b.")[1].split("## Why")[0]
    rows = [line.split("|")[1] for line in plain.splitlines() if line.startswith("| scenario")]
    assert rows and rows == [line.split("|")[1] for line in guard.splitlines() if line.startswith("| scenario")]
    assert any("scenario 2" in row for row in rows)


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
