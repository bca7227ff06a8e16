"""Commands that talk to a running kpiguard over HTTP: ``report`` and ``demo``."""

from __future__ import annotations

import argparse
from typing import Any

from kpiguard.client._demo import Demo, DemoFailed, run_demo
from kpiguard.client._http import DEFAULT_URL, Api, ApiError
from kpiguard.client._report import run_report


def add_commands(sub: Any) -> None:
    """Add ``report`` and ``demo`` to the ``kpiguard`` subcommands; each sets ``run`` to its function."""
    report = sub.add_parser("report", help="print the Monday control plane of a running service")
    _connection(report)
    report.add_argument("--json", action="store_true", help="print the JSON instead of text")
    report.set_defaults(run=run_report)
    demo = sub.add_parser("demo", help="play the Tripwire's testing flow and scenarios against a running service")
    _connection(demo)
    demo.set_defaults(run=run_demo)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service's base URL (default {DEFAULT_URL})")
    parser.add_argument("--token", help="bearer token (admin for the demo; any for the report)")


__all__ = ["DEFAULT_URL", "Api", "ApiError", "Demo", "DemoFailed", "add_commands", "run_demo", "run_report"]
