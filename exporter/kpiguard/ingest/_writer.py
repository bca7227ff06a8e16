"""Storing KPI events durably: group commit for single events, one statement (or COPY) per batch.

An event is acknowledged only after the transaction that holds it has committed. Single events
that arrive together share one transaction (group commit), which is what lets a durable
single-event POST keep up with many concurrent clients. Listeners run after every commit with
the rows that were stored, so that metrics and evaluation never see an uncommitted event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from kpiguard.db._types import utcnow
from kpiguard.db.models import IngestRequest, KpiEvent
from kpiguard.errors import StorageError
from kpiguard.ingest._schema import ROW_FIELDS, EventRow

log = logging.getLogger(__name__)

# SQLite allows 32,766 bound parameters in one statement; ten columns a row.
_SQLITE_ROWS_PER_STATEMENT = 3000
_COLUMNS = ROW_FIELDS
# Group commits in flight at once on PostgreSQL: events that arrive while one group waits for its
# commit (an fsync) start the next at once instead of waiting for it.
_PG_COMMITS_IN_FLIGHT = 2
_SQLITE_INSERT_GROUP = f"INSERT INTO kpi_event ({', '.join(_COLUMNS)}) VALUES "
_SQLITE_ROW = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
# A group of single events in one statement: one array per column, rows inserted in their order.
_PG_INSERT_GROUP = (
    f"INSERT INTO kpi_event ({', '.join(_COLUMNS)}) "
    "SELECT domain, metric, success, value, actor, correlation_id, detail, created_at, event_id FROM unnest("
    "$1::varchar[], $2::varchar[], $3::boolean[], $4::float8[], $5::varchar[], $6::varchar[], $7::json[], "
    "$8::timestamptz[], $9::varchar[]) WITH ORDINALITY "
    f"AS u({', '.join(_COLUMNS)}, n) ORDER BY n RETURNING id"
)


class StoredEvent(NamedTuple):
    """A committed KPI event as the API returns it (``id`` is None for a batch's events, stored by COPY).

    A named tuple, not a dataclass: a batch makes one per event, and a tuple is built several times
    faster than a frozen dataclass; its fields from ``domain`` to ``event_id`` are a COPY record.
    """

    id: int | None
    domain: str
    metric: str
    success: bool
    value: float | None
    actor: str | None
    correlation_id: str | None
    detail: dict[str, Any] | None
    created_at: datetime
    event_id: str | None
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object."""
        out = dict(zip(_JSON_FIELDS, self, strict=False))
        if self.duplicate:
            out["duplicate"] = True
        return out

    def params(self) -> dict[str, Any]:
        """The event's columns as INSERT parameters."""
        return dict(zip(_COLUMNS, self[1:10], strict=True))


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch request stored."""

    stored: int
    duplicates: int
    replayed: bool = False


CommitListener = Callable[[Sequence[StoredEvent]], None]
_JSON_FIELDS = ("id", *_COLUMNS)


def _unstored(rows: Sequence[EventRow], now: datetime) -> list[StoredEvent]:
    """The events as they will be stored, before they have an id (``created_at`` defaults to ``now``)."""
    # tuple.__new__ directly: the named tuple's own __new__ is a Python function, and was 12 % of batch ingest.
    new = tuple.__new__
    return [
        new(StoredEvent, (None, domain, metric, success, value, actor, correlation_id, detail, created_at or now,
                          event_id, False))
        for domain, metric, success, value, actor, correlation_id, detail, created_at, event_id in rows
    ]


class EventWriter:
    """Writes KPI events; single events are group-committed by a background task (two groups in flight on PostgreSQL)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, engine: AsyncEngine, flush_max_events: int,
        observe_group: Callable[[float], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._engine = engine
        self._dialect = engine.dialect.name
        self._flush_max = flush_max_events
        self._observe_group = observe_group  # the size of each group commit (a histogram's observe)
        self._queue: asyncio.Queue[tuple[StoredEvent, asyncio.Future[StoredEvent]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []
        # SQLite has one writer: a second commit in flight would only wait for the lock.
        self._slots = asyncio.Semaphore(_PG_COMMITS_IN_FLIGHT if self._dialect == "postgresql" else 1)
        self._commits: set[asyncio.Task[None]] = set()
        # Groups that look up event_ids run one at a time, so two of them never insert the same event_id.
        self._event_id_groups = asyncio.Lock()
        # SQLite: the group commit keeps one connection (and stores values as sqlite_params converts them).
        self._sqlite_conn: AsyncConnection | None = None
        self._sqlite_raw: Any = None  # its aiosqlite connection, in autocommit mode while the writer keeps it
        self._sqlite_isolation: str | None = None
        # PostgreSQL: connections kept out of the pool (with their asyncpg connection), never all of a small pool
        self._pg_kept: list[tuple[AsyncConnection, Any]] = []
        self._pg_open = 0
        pool_size = getattr(engine.pool, "size", lambda: 0)()
        self._pg_keep = max(0, min(_PG_COMMITS_IN_FLIGHT, pool_size - 1)) if self._dialect == "postgresql" else 0

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` with the stored rows after every commit."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start the group-commit task."""
        self._task = asyncio.create_task(self._run(), name="kpiguard-event-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._sqlite_conn is not None:
            self._sqlite_raw.isolation_level = self._sqlite_isolation
            await self._sqlite_conn.close()
            self._sqlite_conn = self._sqlite_raw = None
        while self._pg_kept:
            conn, _ = self._pg_kept.pop()
            self._pg_open -= 1
            await conn.close()

    async def add_one(self, event: EventRow) -> StoredEvent:
        """Store one validated event (its row); returns once it is committed."""
        if self._task is None:
            raise StorageError("the event writer is not running")
        fut: asyncio.Future[StoredEvent] = asyncio.get_running_loop().create_future()
        domain, metric, success, value, actor, correlation_id, detail, created_at, event_id = event
        row = tuple.__new__(StoredEvent, (None, domain, metric, success, value, actor, correlation_id, detail,
                                          created_at or utcnow(), event_id, False))
        self._queue.put_nowait((row, fut))
        # No shield needed: the commit runs in the writer's task, so a waiter that is cancelled (its
        # client gone) cancels only its own future, which the writer then leaves alone.
        return await fut

    async def _run(self) -> None:
        while True:
            # A free slot first, then the events: while every slot commits, events gather into one group.
            await self._slots.acquire()
            first = await self._queue.get()
            group = [first]
            while len(group) < self._flush_max and not self._queue.empty():
                group.append(self._queue.get_nowait())
            task = asyncio.create_task(self._commit_and_answer(group))
            self._commits.add(task)
            task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._commits.discard(task)

    async def _commit_and_answer(self, group: list[tuple[StoredEvent, asyncio.Future[StoredEvent]]]) -> None:
        """Commit one group, let the next group's commit start, then answer the waiters: each its event, or the error.

        Answering first had the waiters' handlers (their responses written) run before the writer took
        the next group, so the one SQLite writer sat idle while the event loop answered (a timeline of
        50 clients: 0.4 to 1 ms a commit). Now the slot is free and the next group's first statement
        is on its way before this group's waiters wake.
        """
        released = False
        try:
            stored = await self._commit_group([row for row, _ in group])
        except Exception as exc:  # the whole group failed: every waiter hears it, none is acknowledged
            log.error("storing %d KPI events failed: %s", len(group), exc)
            err = StorageError(f"the database did not store the event: {type(exc).__name__}")
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(err)
        else:
            self._slots.release()
            released = True
            # one loop turn: the writer takes what is queued, and its commit task is scheduled ahead of
            # the waiters this group's answers wake
            await asyncio.sleep(0)
            for (_, fut), ev in zip(group, stored, strict=True):
                if not fut.done():
                    fut.set_result(ev)
            if self._observe_group is not None:
                self._observe_group(len(group))
            self._notify([ev for ev in stored if not ev.duplicate])
        finally:
            if not released:
                self._slots.release()
            for _ in group:
                self._queue.task_done()

    async def _commit_group(self, rows: list[StoredEvent]) -> list[StoredEvent]:
        """Insert the rows in one transaction; a row whose event_id is known answers with the stored event."""
        if not any(r.event_id for r in rows):
            if self._dialect == "postgresql":
                return await self._pg_insert_group(rows)
            if self._dialect == "sqlite":
                return await self._sqlite_insert_group(rows)
        async with self._event_id_groups, self._sessions() as session, session.begin():
            prior = await _existing_events(session, [r.event_id for r in rows if r.event_id])
            fresh: list[StoredEvent] = []
            claimed: set[str] = set()
            for r in rows:
                eid = r.event_id
                if eid is None or (eid not in prior and eid not in claimed):
                    fresh.append(r)
                    if eid is not None:
                        claimed.add(eid)
            ids: list[int] = []
            if fresh:
                # insertmanyvalues: one multi-row INSERT ... RETURNING, ids in parameter order
                stmt = insert(KpiEvent).returning(KpiEvent.id, sort_by_parameter_order=True)
                ids = list((await session.execute(stmt, [r.params() for r in fresh])).scalars())
        new_ids = {id(r): i for r, i in zip(fresh, ids, strict=True)}
        out: list[StoredEvent] = []
        for r in rows:
            if id(r) in new_ids:
                ev = r._replace(id=new_ids[id(r)])
                if r.event_id is not None:
                    prior[r.event_id] = ev
                out.append(ev)
            else:  # a replay of an event_id stored before, or earlier in this same group
                out.append(prior[r.event_id]._replace(duplicate=True))  # type: ignore[index]
        return out

    @contextlib.asynccontextmanager
    async def _pg_raw(self) -> AsyncIterator[Any]:
        """An asyncpg connection for one autocommitted statement; closed (not reused) if the statement fails.

        The writer keeps up to _PG_COMMITS_IN_FLIGHT connections checked out of the pool for good, as
        the SQLite writer keeps its one: checking a connection out and back in for every group (the
        pool, SQLAlchemy's greenlet hop, its reset) was about 5 % of a single event's server time.
        Beyond those (batches side by side), a connection is checked out for the statement.
        """
        kept = self._pg_kept.pop() if self._pg_kept else None
        keep = kept is not None or self._pg_open < self._pg_keep
        if kept is None:
            if keep:
                self._pg_open += 1  # before the await: two groups opening at once do not both keep theirs
            conn = None
            try:
                conn = await self._engine.connect()
                kept = (conn, (await conn.get_raw_connection()).driver_connection)
            except BaseException:
                self._pg_open -= keep
                if conn is not None:
                    await conn.close()
                raise
        try:
            yield kept[1]
        except BaseException:
            # SQLAlchemy did not see the statement fail: drop the connection rather than reuse a broken one
            self._pg_open -= keep
            with contextlib.suppress(Exception):
                await kept[0].invalidate()
                await kept[0].close()
            raise
        if keep:
            self._pg_kept.append(kept)
        else:
            await kept[0].close()

    async def _pg_insert_group(self, rows: list[StoredEvent]) -> list[StoredEvent]:
        """Insert events without an event_id in one statement, committed when it returns (no BEGIN, no COMMIT).

        The ORM session's begin, bulk insert and commit were most of the group-commit writer's time
        and two extra round trips; a single statement is its own transaction, so it is all-or-nothing
        and durable once PostgreSQL answers, which is when the waiters hear it.
        """
        dumps = json.dumps
        columns = list(zip(*(r[1:10] for r in rows), strict=True))
        columns[6] = [None if d is None else dumps(d) for d in columns[6]]
        async with self._pg_raw() as raw:
            found = await raw.fetch(_PG_INSERT_GROUP, *columns)
        # ids come from the sequence in the SELECT's ORDER BY order (as SQLAlchemy's insertmanyvalues
        # relies on), so sorted they belong to the rows in order
        ids = sorted(rec[0] for rec in found)
        new = tuple.__new__
        return [new(StoredEvent, (i, *r[1:])) for r, i in zip(rows, ids, strict=True)]

    async def _sqlite_insert_group(self, rows: list[StoredEvent]) -> list[StoredEvent]:
        """Insert events without an event_id with one INSERT ... RETURNING that SQLite commits as it ends: one hop.

        Each aiosqlite call is a hop to the connection's thread and back, and its answer waits for the
        event loop to come round, behind the requests it is busy with. The ORM session took six a group
        (cursor, execute, fetchall, close, commit, the pool's reset), then INSERT and COMMIT took two,
        and a timeline showed the COMMIT waiting for the loop to answer the last group. Now the writer's
        own connection runs in SQLite's autocommit mode: the INSERT is its own transaction, durable
        (synchronous=FULL) before its last row is fetched. A group longer than one statement's rows is
        one explicit transaction.
        """
        if self._sqlite_conn is None:
            conn = await self._engine.connect()
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            # restored before the connection goes back to the pool (stop): SQLAlchemy expects its default
            self._sqlite_isolation = raw.isolation_level
            raw.isolation_level = None
            self._sqlite_conn, self._sqlite_raw = conn, raw
        conn, raw = self._sqlite_conn, self._sqlite_raw
        try:
            if len(rows) <= _SQLITE_ROWS_PER_STATEMENT:
                sql = _SQLITE_INSERT_GROUP + ", ".join([_SQLITE_ROW] * len(rows)) + " RETURNING id"
                found = list(await raw.execute_fetchall(sql, sqlite_params(rows)))
            else:
                await raw.execute("BEGIN")
                found = []
                for start in range(0, len(rows), _SQLITE_ROWS_PER_STATEMENT):
                    chunk = rows[start : start + _SQLITE_ROWS_PER_STATEMENT]
                    sql = _SQLITE_INSERT_GROUP + ", ".join([_SQLITE_ROW] * len(chunk)) + " RETURNING id"
                    found.extend(await raw.execute_fetchall(sql, sqlite_params(chunk)))
                await raw.commit()
        except BaseException:
            self._sqlite_conn = self._sqlite_raw = None
            with contextlib.suppress(Exception):
                await raw.rollback()
            with contextlib.suppress(Exception):
                await conn.invalidate()
                await conn.close()
            raise
        # SQLite gives the rows of one INSERT consecutive rowids in VALUES order (it holds the write lock)
        ids = sorted(rec[0] for rec in found)
        new = tuple.__new__
        return [new(StoredEvent, (i, *r[1:])) for r, i in zip(rows, ids, strict=True)]

    async def add_batch(self, events: Sequence[EventRow], idempotency_key: str | None) -> BatchResult:
        """Store a batch of validated events (rows) all-or-nothing; a seen Idempotency-Key stores nothing again."""
        # One tuple per event, shared by the COPY records and the commit listeners (no dict, no copy).
        rows = _unstored(events, utcnow())
        for attempt in (1, 2):
            try:
                result, stored = await self._store_batch(rows, idempotency_key)
            except IntegrityError:
                # a concurrent request stored the same key or event_id first; the retry sees it
                if attempt == 2:
                    raise StorageError("the batch conflicted with a concurrent request twice") from None
                continue
            except (OperationalError, DBAPIError, OSError) as exc:
                raise StorageError(f"the database did not store the batch: {type(exc).__name__}") from exc
            self._notify(stored)
            return result
        raise AssertionError("unreachable")

    async def _store_batch(self, rows: list[StoredEvent], key: str | None) -> tuple[BatchResult, list[StoredEvent]]:
        if key is None and self._dialect == "postgresql" and not any(r.event_id for r in rows):
            await self._pg_copy(rows)
            return BatchResult(stored=len(rows), duplicates=0), rows
        async with self._sessions() as session, session.begin():
            if key is not None:
                prior = await session.get(IngestRequest, key)
                if prior is not None:
                    return BatchResult(stored=prior.events, duplicates=0, replayed=True), []
            event_ids = [r.event_id for r in rows if r.event_id]
            fresh = rows
            if event_ids:
                known = await _existing_event_ids(session, event_ids)
                fresh = []
                for r in rows:
                    eid = r.event_id
                    if eid is not None:
                        if eid in known:
                            continue
                        known.add(eid)
                    fresh.append(r)
            if key is not None:
                session.add(IngestRequest(key=key, endpoint="kpi-events", events=len(fresh), created_at=utcnow()))
                await session.flush()
            if fresh:
                await self._insert_many(session, fresh)
        return BatchResult(stored=len(fresh), duplicates=len(rows) - len(fresh)), fresh

    async def _pg_copy(self, rows: list[StoredEvent]) -> None:
        """COPY a batch with nothing to look up (no Idempotency-Key, no event_id) as one autocommitted statement.

        A COPY is all-or-nothing by itself, and committed when PostgreSQL answers it: the session's
        BEGIN, its first statement and COMMIT were two more round trips and the ORM's bookkeeping.
        """
        async with self._pg_raw() as raw:
            await _copy_rows(raw, rows)

    async def _insert_many(self, session: AsyncSession, rows: list[StoredEvent]) -> None:
        if self._dialect == "postgresql":
            # COPY is PostgreSQL's bulk path; the session's transaction is already open (a statement ran).
            conn = await session.connection()
            if not conn.in_transaction():
                await conn.exec_driver_sql("SELECT 1")
            raw = await conn.get_raw_connection()
            await _copy_rows(raw.driver_connection, rows)
        else:
            params = [r.params() for r in rows]
            for start in range(0, len(params), _SQLITE_ROWS_PER_STATEMENT):
                await session.execute(insert(KpiEvent).values(params[start : start + _SQLITE_ROWS_PER_STATEMENT]))

    def _notify(self, stored: Sequence[StoredEvent]) -> None:
        if not stored:
            return
        for listener in self._listeners:
            try:
                listener(stored)
            except Exception:  # a listener's bug must not turn a committed write into an error
                log.exception("commit listener %r failed", listener)


def sqlite_params(rows: Sequence[StoredEvent]) -> list[Any]:
    """The rows' column values, one after the other, exactly as SQLAlchemy's bind processors store them on SQLite.

    Booleans as 1 and 0, the detail as JSON text ("null" for none), the time as naive UTC text with
    microseconds (UTCDateTime, then SQLite's DATETIME). Profiled: the nine generic processor calls
    an event were 5 % of a single event's server time, 7 µs an event against 2.5 µs here.
    """
    out: list[Any] = []
    add = out.extend
    dumps = json.dumps
    for _, domain, metric, success, value, actor, correlation_id, detail, created_at, event_id, _dup in rows:
        add((domain, metric, 1 if success else 0, None if value is None else float(value), actor, correlation_id,
             "null" if detail is None else dumps(detail), _sqlite_time(created_at), event_id))
    return out


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is UTC:  # the server's own clock (utcnow), most events
        utc = value.replace(tzinfo=None)
    elif value.tzinfo is None:
        raise ValueError("naive datetime given to a UTCDateTime column")
    else:
        utc = value.astimezone(UTC).replace(tzinfo=None)
    text = utc.isoformat(" ")  # the year always has four digits
    return text if utc.microsecond else text + ".000000"


async def _copy_rows(raw: Any, rows: list[StoredEvent]) -> None:
    """COPY the rows into kpi_event on an asyncpg connection."""
    # A stored event's fields 1..9 are the record, in _COLUMNS order; only a detail needs converting.
    dumps = json.dumps
    records = [r[1:10] if r.detail is None else (*r[1:7], dumps(r.detail), r.created_at, r.event_id) for r in rows]
    await raw.copy_records_to_table("kpi_event", records=records, columns=_COLUMNS)


async def _existing_event_ids(session: AsyncSession, event_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(event_ids), 1000):
        chunk = event_ids[start : start + 1000]
        res = await session.execute(select(KpiEvent.event_id).where(KpiEvent.event_id.in_(chunk)))
        found.update(res.scalars())
    return found


async def _existing_events(session: AsyncSession, event_ids: list[str]) -> dict[str, StoredEvent]:
    if not event_ids:
        return {}
    res = await session.execute(select(KpiEvent).where(KpiEvent.event_id.in_(set(event_ids))))
    return {e.event_id: StoredEvent(*(getattr(e, f) for f in _JSON_FIELDS)) for e in res.scalars()}
