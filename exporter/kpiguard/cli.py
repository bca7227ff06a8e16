"""The ``kpiguard`` command: serve, db upgrade, version, report, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kpiguard import __version__
from kpiguard.errors import ConfigError, SpecError
from kpiguard.settings import Settings, load_settings

log = logging.getLogger("kpiguard")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpiguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--config", type=Path, help="YAML settings file (KPIGUARD_* variables override it)")
    serve.add_argument("--host", help="bind address (overrides the settings)")
    serve.add_argument("--port", type=int, help="bind port (overrides the settings)")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    up.add_argument("--config", type=Path)

    sub.add_parser("version", help="print the version")
    from kpiguard.client import add_commands

    add_commands(sub)  # report, demo: they set ``run``
    return parser


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from kpiguard.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(args.config, **overrides)
    _setup_logging(settings)
    log.info("kpiguard %s on http://%s:%d, store %s", __version__, settings.host, settings.port,
             settings.database_url.split("@")[-1])
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None,
                access_log=None, handle_signals=True)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from kpiguard.db import migrate
    from kpiguard.db.engine import create_engine

    settings = load_settings(args.config)
    _setup_logging(settings)

    async def run() -> str | None:
        engine = create_engine(settings)
        try:
            before = await migrate.current_revision(engine)
            await migrate.upgrade(engine)
            after = await migrate.current_revision(engine)
        finally:
            await engine.dispose()
        print(f"database migrated: {before or '(empty)'} -> {after}")
        return after

    asyncio.run(run())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "run", None) is not None:
        from kpiguard.client import ApiError

        try:
            return int(args.run(args))
        except ApiError as exc:
            print(f"kpiguard {args.command}: {exc}", file=sys.stderr)
            return 1
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db_upgrade(args)
        if args.command == "version":
            print(f"kpiguard {__version__}")
            return 0
    except ConfigError as exc:
        print(f"kpiguard: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(f"kpiguard: {exc}", file=sys.stderr)
        return 2
    return 1
