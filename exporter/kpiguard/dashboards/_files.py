"""Generated dashboard files: JSON texts, written to or compared with a dashboards directory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kpiguard._generated import sync_command
from kpiguard.dashboards._drift import drift_dashboard
from kpiguard.dashboards._grafana import GENERATED_KEY, render
from kpiguard.dashboards._model import Dashboard
from kpiguard.dashboards._service import service_dashboard
from kpiguard.dashboards._tripwire import tripwire_dashboard


def dashboards() -> tuple[Dashboard, ...]:
    """Every dashboard kpiguard ships."""
    return (tripwire_dashboard(), drift_dashboard(), service_dashboard())


def to_json(document: Mapping[str, Any]) -> str:
    """Stable JSON text: two-space indent, keys in the order built, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate_files() -> dict[str, str]:
    """Every generated file, name → content: ``<uid>.json`` per dashboard."""
    files = {}
    for dashboard in dashboards():
        name = f"{dashboard.uid}.json"
        if name in files:
            raise ValueError(f"two dashboards have the uid {dashboard.uid}")
        files[name] = to_json(render(dashboard))
    return files


def _is_generated(path: Path) -> bool:
    """Whether a JSON file carries the generator's ``__generated`` key."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(document, dict) and GENERATED_KEY in document


def diff_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Names whose file is missing or different, and generated files no longer generated; sorted."""
    differing = set()
    for name, content in files.items():
        try:
            if (out_dir / name).read_text(encoding="utf-8") != content:
                differing.add(name)
        except (OSError, UnicodeDecodeError):
            differing.add(name)
    if out_dir.is_dir():
        differing |= {p.name for p in out_dir.glob("*.json") if p.name not in files and _is_generated(p)}
    return sorted(differing)


def write_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files into ``out_dir``, delete generated files no longer generated; return what changed."""
    changed = diff_files(out_dir, files)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in changed:
        path = out_dir / name
        if name in files:
            path.write_text(files[name], encoding="utf-8")
        else:
            path.unlink()  # only files that carry the __generated key are ever deleted
    return changed


def generate_command(out_dir: Path, check: bool) -> int:
    """``kpiguard dashboards generate``: write the dashboards, or with ``check`` only compare; exit code."""
    files = generate_files()
    return sync_command(
        out_dir, files, check, diff=diff_files, write=write_files,
        mismatch=f"{out_dir} does not match the generator; run kpiguard dashboards generate",
        up_to_date=f"{out_dir} is up to date ({len(files)} dashboards)",
    )
