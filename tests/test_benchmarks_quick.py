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
    "| native enforcement latency, PostgreSQL |",
    "| native enforcement latency, SQLite |",
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
