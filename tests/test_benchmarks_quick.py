"""The benchmark runner's quick mode: one command writes a report with every row (the harness, not the speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Every figure of issue 8, by the start of its row in BENCHMARKS.md.
ROWS = (
    "| durable single-event POST, PostgreSQL |",
    "| single-event POST, PostgreSQL ÷ aiohttp hello-world |",
    "| single-event POST, PostgreSQL ÷ Pushgateway |",
    "| single-event POST, SQLite ÷ aiohttp hello-world |",
    "| single-event POST, SQLite ÷ Pushgateway |",
    "| batch ingest NDJSON, PostgreSQL |",
    "| batch ingest NDJSON ÷ raw asyncpg COPY |",
    "| policy evaluation, 5 policies over 2,000 rows (1M) |",
    "| policy evaluation, 5 policies over 20,000 rows (10M) |",
    "| evaluation time at 10M ÷ at 1M |",
    "| /metrics with 100 series |",
    "| /metrics with 300 series |",
    "| native enforcement latency, PostgreSQL, default guard (combined) |",
    "| native enforcement latency, PostgreSQL, plain rule (guard none) |",
    "| native enforcement latency, SQLite, default guard (combined) |",
    "| native enforcement latency, SQLite, plain rule (guard none) |",
    "| RSS after 2,000 events |",
    "| RSS after a flood of 1,000 distinct (domain, metric) pairs |",
    "| RSS after a second flood of 1,000 new pairs (flat?) |",
    "| Prometheus path: degradation → throttled via Prometheus + Alertmanager ÷ trivial webhook loop |",
)


@pytest.mark.postgres
def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick --out FILE` exits 0 and writes the machine, the load and every row once."""
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    text = out.read_text()
    for head in ("## Machine", "PostgreSQL 1", "load average", "Quick mode", "## Results"):
        assert head in text, head
    results = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = results.splitlines()
    for row in ROWS:
        hits = [ln for ln in lines if ln.startswith(row)]
        assert len(hits) == 1, f"{row!r} appears {len(hits)} times"
        cells = [c.strip() for c in hits[0].strip("|").split("|")]
        assert len(cells) == 7 and all(cells[:5]), hits[0]


def _bench_module(name: str):  # type: ignore[no-untyped-def]
    """benchmarks/NAME.py, imported by path (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"kpiguard_bench_{name}", REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_interleaved_rounds_take_turns_in_rotated_order_and_pool() -> None:
    """Each round runs every target once, starting one further along; the pooled rate is all answers over all seconds."""
    h = _bench_module("_harness")
    order: list[str] = []

    def target(name: str, requests: int, errors: int):  # type: ignore[no-untyped-def]
        def run(seconds: float):  # type: ignore[no-untyped-def]
            order.append(name)
            return h.Load("fake", requests, errors, seconds, (requests - errors) / seconds, None, float(len(order)))
        return run

    pooled = h.interleaved({"a": target("a", 100, 0), "b": target("b", 60, 10), "c": target("c", 30, 0)},
                           rounds=3, seconds=2.0)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert pooled["a"].requests == 300 and pooled["b"].errors == 30
    assert pooled["a"].rps == 300 / 6 and pooled["b"].rps == 150 / 6
    assert pooled["c"].p99_ms == 7.0  # the worst round's
    assert h.round_ratios(pooled["b"], pooled["a"]) == "0.50-0.50× round by round over 3 rounds"


def test_crossing_failure_is_the_first_failure_that_triggers() -> None:
    """The enforcement trials time the failure kpiguard's evaluation first triggers on: 2nd plain, 6th guarded."""
    bench = _bench_module("run")
    assert bench.crossing_failure("none") == 2  # 2 failures in a window of 10: a 20 % drop, the threshold
    assert bench.crossing_failure("evidence") == bench.crossing_failure("combined") == 6
