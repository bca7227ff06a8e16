"""The e2e stack as a session fixture, and its figures printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e._stack import Processes, Stack

FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """kpiguard (native enforcement off), Prometheus, Alertmanager and a trivial webhook, ready; stopped after."""
    processes = Processes(tmp_path_factory.mktemp("e2e"))
    try:
        failure = None
        try:
            running = processes.start()
        except (RuntimeError, TimeoutError) as exc:
            failure = f"the e2e stack did not start: {exc}"
        if failure is not None:
            # Fail, never skip: tests/run.sh installs the binaries, and a missing one is a broken setup.
            pytest.fail(failure, pytrace=False)
        FIGURES["fixture_startup_seconds"] = round(running.startup_seconds, 3)
        print(f"\ne2e stack ready in {running.startup_seconds:.2f} s (logs in {processes.workdir})")
        running.figures = FIGURES
        yield running
    finally:
        processes.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the start-up and loop figures, so that they show without -s."""
    if FIGURES:
        terminalreporter.section("kpiguard e2e figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")
