"""``kpiguard report``: the Monday control plane of a running service, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from kpiguard.client._http import Api
from kpiguard.governance import render_report


def run_report(args: argparse.Namespace) -> int:
    """Print the control plane; 0 on success."""
    data = Api(args.url, args.token).get("/api/governance/control-plane")
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_report(data))
    return 0
