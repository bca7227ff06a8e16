"""The ``kpiguard`` command: serve, db upgrade, policies, rules, dashboards, report, demo, version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
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
    serve.add_argument("--access-log", action="store_true",
                       help="log every request on the aiohttp.access logger (off by default: it costs CPU per request)")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    up.add_argument("--config", type=Path)

    policies = sub.add_parser("policies", help="regression policies as a declarative YAML file")
    pol_sub = policies.add_subparsers(dest="policies_command", required=True)
    apply = pol_sub.add_parser("apply", help="apply a policies file to the database (idempotent, shows a diff)")
    apply.add_argument("file", type=Path)
    apply.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    apply.add_argument("--actor", default=None, help="who applies (audit trail); default: the file's changed_by")
    apply.add_argument("--config", type=Path)
    export = pol_sub.add_parser("export", help="print the database's policies as a policies file")
    export.add_argument("--config", type=Path)

    rules = sub.add_parser("rules", help="Prometheus rules generated from policies")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    gen = rules_sub.add_parser("generate", help="write recording rules, alerts and promtool tests")
    gen.add_argument("--policies", type=Path, default=Path("rules/policies.yaml"), help="policies YAML file")
    gen.add_argument("--out", type=Path, default=Path("rules"), help="output folder")
    gen.add_argument("--check", action="store_true", help="fail if the files on disk differ, write nothing")
    gen.add_argument("--config", type=Path, help="settings file (the drift rules use the monitor thresholds)")

    dashboards = sub.add_parser("dashboards", help="Grafana dashboards")
    dashboards_sub = dashboards.add_subparsers(dest="dashboards_command", required=True)
    dgen = dashboards_sub.add_parser("generate", help="write the generated dashboards (grafana/dashboards)")
    dgen.add_argument("--out", type=Path, default=Path("grafana/dashboards"), help="dashboards directory")
    dgen.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is out of date")

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
    # No access log unless asked for: formatting and writing a line per request was a measurable
    # part of a request's time (benchmarks/FINDINGS.md); the benchmark's hello-world peer runs without one too.
    access_log = None
    if args.access_log:
        access_log = logging.getLogger("aiohttp.access")
        access_log.setLevel(logging.INFO)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None,
                access_log=access_log, handle_signals=True)
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


def _policies(args: argparse.Namespace) -> int:
    from kpiguard.db.engine import create_engine, session_factory
    from kpiguard.tripwire import dump_policies, load_policies
    from kpiguard.tripwire._apply import apply_policies, export_policies_from
    from kpiguard.tripwire._store import list_policies

    settings = load_settings(args.config)
    _setup_logging(settings)
    wanted = load_policies(args.file) if args.policies_command == "apply" else []

    async def run() -> int:
        engine = create_engine(settings)
        try:
            sessions = session_factory(engine)
            if args.policies_command == "export":
                async with sessions() as session:
                    print(dump_policies(export_policies_from(await list_policies(session))), end="")
                return 0
            changes = await apply_policies(sessions, wanted, dry_run=args.dry_run, actor=args.actor or "cli")
        finally:
            await engine.dispose()
        for change in changes:
            print(change.describe())
        todo = sum(c.kind != "unchanged" for c in changes)
        verb = "would change" if args.dry_run else "changed"
        print(f"{len(changes)} policies in {args.file}: {verb} {todo}")
        return 0

    return asyncio.run(run())


def _rules(args: argparse.Namespace) -> int:
    from kpiguard.rulegen import generate_command

    # the drift rules carry the monitor's thresholds, which are settings
    settings = load_settings(args.config)
    return generate_command(args.policies, args.out, args.check, monitor=settings.monitor_thresholds)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # `kpiguard report | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not raise again, and exit quietly as the Python docs recommend (signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
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
        if args.command == "policies":
            return _policies(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "dashboards":
            from kpiguard.dashboards import generate_command as generate_dashboards

            return generate_dashboards(args.out, args.check)
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
