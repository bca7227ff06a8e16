"""Writing or checking a folder of generated files: the shared end of ``rules generate`` and ``dashboards generate``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

Files = Mapping[str, str]


def sync_command(
    out_dir: Path, files: Files, check: bool, *,
    diff: Callable[[Path, Files], list[str]], write: Callable[[Path, Files], list[str]],
    mismatch: str, up_to_date: str,
) -> int:
    """With ``check``: list what differs and exit 1 (``mismatch`` on stderr), else 0; without: write and report."""
    if check:
        stale = diff(out_dir, files)
        for name in stale:
            print(f"out of date: {out_dir / name}")
        if stale:
            print(mismatch, file=sys.stderr)
            return 1
        print(up_to_date)
        return 0
    changed = set(write(out_dir, files))
    for name in sorted(set(files) | changed):
        state = "removed" if name not in files else "wrote" if name in changed else "unchanged"
        print(f"{state} {out_dir / name}")
    return 0
