"""Opening the database: one async engine and session factory per app."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from kpiguard.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the engine for the configured store, tuned for it."""
    kwargs: dict[str, Any] = {}
    if settings.is_sqlite:
        # SQLite allows one writer; a generous busy timeout makes concurrent writers wait, not fail.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = 0
        kwargs["pool_pre_ping"] = False
        # JIT off: kpiguard's statements are short, and the evaluation round's estimated cost (a
        # LIMIT per policy, unknown when planned) passes jit_above_cost, so PostgreSQL compiled it on
        # every execution: 15-50 ms of JIT for a statement that runs in 10-20 ms (EXPLAIN ANALYZE).
        server_settings = {"jit": "off"}
        if settings.database_schema:
            server_settings["search_path"] = settings.database_schema
        kwargs["connect_args"] = {"server_settings": server_settings}
    engine = create_async_engine(settings.database_url, **kwargs)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL keeps an acknowledged commit on disk.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    """A session factory that keeps loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


# One FIFO lock per SQLite engine for kpiguard's own write transactions. SQLite has one writer;
# a connection that finds the lock taken sleeps in SQLite's busy handler (1, 2, 5, 10, 15, 20,
# 25 ... 100 ms), so two writers of one process overshoot each other's commits by up to tens of
# milliseconds. Waiting here instead hands the lock over as soon as the holder commits.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_lock(bind: AsyncEngine | Engine) -> AbstractAsyncContextManager[Any]:
    """Hold around a write transaction (first write to commit): SQLite's writers of this process queue here.

    A no-op on PostgreSQL, whose row locks let writers run side by side.
    """
    sync = bind.sync_engine if isinstance(bind, AsyncEngine) else bind
    if sync.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _WRITE_LOCKS.get(sync)
    if lock is None:
        lock = _WRITE_LOCKS[sync] = asyncio.Lock()
    return lock


# Compiled SQL of the statements sqlite_rows runs (module-level constants), by statement and dialect.
_SQLITE_SQL: dict[tuple[int, str], tuple[Any, str, tuple[str, ...]]] = {}


async def sqlite_rows(session: AsyncSession, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a read on the session's SQLite connection straight through aiosqlite: one hop to its thread.

    Through the session a statement takes four hops (cursor, execute, fetch, close) and SQLAlchemy's
    result handling: the tripwire's windows read took 1.7 ms that way and 0.46 ms this way on an
    idle machine, and the hops wait longer when the event loop is busy (native enforcement latency,
    benchmarks/FINDINGS.md). For module-level statements whose results need no type processing
    (numbers and text: booleans come back as 0 and 1).
    """
    dialect = session.bind.dialect
    key = (id(stmt), dialect.name)  # one entry per statement, however many engines a process opens
    entry = _SQLITE_SQL.get(key)
    if entry is None:
        compiled = stmt.compile(dialect=dialect)
        entry = _SQLITE_SQL[key] = (compiled, compiled.string, tuple(compiled.positiontup or ()))
    compiled, sql, names = entry
    values = compiled.construct_params(params)
    conn = await session.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    return list(await raw.execute_fetchall(sql, [values[n] for n in names]))
