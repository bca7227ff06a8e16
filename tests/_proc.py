"""Helpers for tests that run kpiguard or other programs as real processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kpiguard_env(**settings: str) -> dict[str, str]:
    """The environment for a kpiguard subprocess: this checkout's code, only the given KPIGUARD_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPIGUARD_")}
    env["PYTHONPATH"] = str(REPO / "exporter") + os.pathsep + env.get("PYTHONPATH", "")
    env.update({f"KPIGUARD_{k.upper()}": v for k, v in settings.items()})
    return env


def run_kpiguard(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one kpiguard command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "kpiguard", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_kpiguard(*args: str, cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start ``kpiguard serve`` and wait until /healthz answers."""
    log = open(cwd / f"kpiguard-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpiguard", "serve", "--port", str(port), *args],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=cwd / f"kpiguard-{port}.log")
    return proc


def wait_http(url: str, *, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {log.read_text() if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process with SIGTERM and wait for it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
