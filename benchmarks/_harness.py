"""The benchmark runner's plumbing: machine facts, processes on loopback, wrk or an aiohttp load generator."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_DSN = os.environ.get("KPIGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL = PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, kernel and Python of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                      if x.startswith("MemTotal"))
        ram = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        ram = "unknown"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as text."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_seconds(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    return _cpu_seconds(f"/proc/{pid}/stat")


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by every running PostgreSQL process on this machine (backends included).

    CPU time grows less than wall time when other work shares the cores, though not nothing on this
    machine (hello-world's own CPU a request measured 93 and 179 µs forty minutes apart): a row that
    moves with the machine's load says with it how much work it did.
    """
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().startswith("postgres"):
                total += _cpu_seconds(f"/proc/{entry}/stat")
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return total


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Server:
    """A server process on a loopback port."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then wait (kill after 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(name: str, argv: Sequence[str], workdir: Path, health: str, env: dict[str, str] | None = None) -> Server:
    """Start a server process and wait until ``health`` (a path) answers."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    log = workdir / f"{name}-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
    server = Server(name, proc, port, log)
    try:
        wait_http(server.url + health, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


def kpiguard_env(**settings: str) -> dict[str, str]:
    """The environment of a kpiguard process: this checkout's code, only the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPIGUARD_")}
    # BENCH_EXPORTER: serve another checkout's exporter/ (a before/after comparison of a change)
    code = os.environ.get("BENCH_EXPORTER", str(REPO / "exporter"))
    env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    env.update({f"KPIGUARD_{k.upper()}": v for k, v in settings.items()})
    return env


def start_kpiguard(workdir: Path, *, database_url: str, schema: str | None = None, **settings: str) -> Server:
    """Start ``kpiguard serve`` on a free port of 127.0.0.1."""
    base = {"database_url": database_url, "auto_migrate": "true", "evaluation_interval_seconds": "0",
            "log_level": "WARNING"}
    if schema:
        base["database_schema"] = schema
    base.update(settings)
    return start("kpiguard", [sys.executable, "-m", "kpiguard", "serve", "--port", "{port}"], workdir,
                 "/healthz", kpiguard_env(**base))


def start_hello(workdir: Path) -> Server:
    """Start the aiohttp hello-world peer (benchmarks/_hello.py)."""
    return start("hello", [sys.executable, str(REPO / "benchmarks" / "_hello.py"), "{port}"], workdir, "/")


def start_pushgateway(workdir: Path) -> Server | None:
    """Start Debian's Prometheus Pushgateway, or None when it is not installed."""
    exe = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if exe is None:
        return None
    return start("pushgateway", [exe, "--web.listen-address=127.0.0.1:{port}"], workdir, "/-/ready")


# --- load generation ---


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    tool: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_wrk(url: str, body: bytes, ctype: str, *, connections: int, seconds: float, threads: int = 2) -> Load:
    """POST ``body`` to ``url`` with wrk for ``seconds`` over ``connections`` connections."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_SCRIPT.format(ctype=ctype, body=body_file))
        threads = min(threads, connections)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
             str(script), url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout
    total = int(re.search(r"(\d+) requests in ([\d.]+\w+)", out).group(1))
    secs = _ms(re.search(r"\d+ requests in ([\d.]+\w+)", out).group(1)) / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return Load("wrk", total, errors, secs, (total - errors) / secs if secs else 0.0,
                _ms(p50.group(1)) if p50 else None, _ms(p99.group(1)) if p99 else None)


def run_aiohttp_load(url: str, body: bytes, ctype: str, *, connections: int, seconds: float) -> Load:
    """The same as :func:`run_wrk` with an aiohttp client in a separate process (when wrk is missing)."""
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(body)
        fh.flush()
        out = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "_load.py"), url, fh.name, ctype, str(connections),
             str(seconds)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout
    return Load(**json.loads(out))


def post_load(url: str, body: bytes, ctype: str, *, connections: int, seconds: float) -> Load:
    """POST load with wrk if installed, otherwise with the aiohttp load generator."""
    if shutil.which("wrk"):
        return run_wrk(url, body, ctype, connections=connections, seconds=seconds)
    return run_aiohttp_load(url, body, ctype, connections=connections, seconds=seconds)


@dataclass(frozen=True)
class Pooled:
    """Several interleaved load runs of one target, pooled: total answers over total seconds."""

    runs: tuple[Load, ...]

    @property
    def tool(self) -> str:
        """The load generator."""
        return self.runs[0].tool

    @property
    def requests(self) -> int:
        """Requests over every run."""
        return sum(r.requests for r in self.runs)

    @property
    def errors(self) -> int:
        """Errors over every run."""
        return sum(r.errors for r in self.runs)

    @property
    def rps(self) -> float:
        """Successful requests a second over every run."""
        secs = sum(r.seconds for r in self.runs)
        return (self.requests - self.errors) / secs if secs else 0.0

    @property
    def p99_ms(self) -> float | None:
        """The worst run's p99."""
        p99s = [r.p99_ms for r in self.runs if r.p99_ms is not None]
        return max(p99s) if p99s else None


def interleaved(targets: dict[str, Callable[[float], Load]], rounds: int, seconds: float) -> dict[str, Pooled]:
    """Run every target's load ``rounds`` times for ``seconds``, taking turns, each round in a rotated order.

    Two targets measured one after the other see different machines when other jobs share the cores
    (hello-world's own rate moved 5,300-9,400 req/s between runs of one afternoon); taking turns in
    short rounds gives each target the same share of the good and the bad minutes, so their ratio
    measures the code rather than the hour.
    """
    names = list(targets)
    runs: dict[str, list[Load]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            runs[name].append(targets[name](seconds))
    return {n: Pooled(tuple(r)) for n, r in runs.items()}


def round_ratios(a: Pooled, b: Pooled) -> str:
    """The per-round ratios a ÷ b as 'min-max over N rounds'."""
    ratios = sorted(x.rps / y.rps for x, y in zip(a.runs, b.runs, strict=True) if y.rps)
    return f"{ratios[0]:.2f}-{ratios[-1]:.2f}× round by round over {len(ratios)} rounds" if ratios else ""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of the values, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[k]


def run_sync(coro: object) -> object:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]
