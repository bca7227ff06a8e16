"""Storage: migrations, readiness and timestamps on both stores."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import inspect, select

from kpiguard.app import create_app
from kpiguard.db import migrate
from kpiguard.db.engine import create_engine
from kpiguard.db.models import KpiEvent
from kpiguard.keys import ENGINE, SESSIONS


async def test_migration_creates_schema_with_window_index(client):
    """The migrations create kpi_event with the covering window index (and not the one it replaced) and reach head."""
    engine = client.app[ENGINE]
    async with engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("kpi_event"))
        columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("kpi_event")])
    assert {"id", "domain", "metric", "success", "value", "actor", "correlation_id", "detail", "created_at"} <= set(
        columns
    )
    window = [ix for ix in indexes if ix["name"] == "ix_kpi_event_window"]
    assert window and window[0]["column_names"] == ["domain", "metric", "created_at", "id", "success", "value"]
    assert "ix_kpi_event_domain_metric_created_at" not in {ix["name"] for ix in indexes}
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_timestamps_come_back_as_utc(client):
    """A timestamp stored from another zone reads back aware and in UTC, and orders by instant."""
    async with client.app[SESSIONS]() as session, session.begin():
        session.add(KpiEvent(domain="D", metric="m", success=True,
                             created_at=datetime.fromisoformat("2026-01-13T16:32:00+02:00")))
        session.add(KpiEvent(domain="D", metric="m", success=True,
                             created_at=datetime.fromisoformat("2026-01-13T15:00:00+00:00")))
    async with client.app[SESSIONS]() as session:
        rows = (await session.execute(select(KpiEvent.created_at).order_by(KpiEvent.created_at))).scalars().all()
    assert rows == [datetime(2026, 1, 13, 14, 32, tzinfo=UTC), datetime(2026, 1, 13, 15, 0, tzinfo=UTC)]


async def test_readyz_reports_pending_migrations(aiohttp_client, make_settings):
    """Without auto-migration on an empty store, /readyz answers 503 and names the command to run."""
    client = await aiohttp_client(create_app(make_settings(auto_migrate=False), CollectorRegistry()))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "kpiguard db upgrade" in (await resp.json())["database"]
    assert (await client.get("/healthz")).status == 200


async def test_upgrade_is_idempotent(make_settings):
    """Running the migration twice leaves the store at head."""
    engine = create_engine(make_settings())
    try:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_metrics_exposition_names(client):
    """/metrics carries build info and HTTP metrics named by route template."""
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    assert 'kpiguard_build_info{python=' in text
    assert 'kpiguard_http_requests_total{code="200",method="GET",route="/healthz"} 1.0' in text
    assert "kpiguard_http_request_duration_seconds_bucket" in text


async def test_seed_policies_carry_the_code_default_guard(client):
    """The seed policies the migration inserts use the same guard parameters as a new policy in code."""
    from kpiguard.tripwire import Policy

    default = Policy("X", "x")
    body = await (await client.get("/api/governance/regression/policies")).json()
    assert {(p["guard"], p["guard_confidence"], p["guard_alpha"]) for p in body} == {
        (default.guard.value, default.guard_confidence, default.guard_alpha)
    }


async def _downgrade(engine, revision: str) -> None:  # type: ignore[no-untyped-def]
    """Migrate the database down to ``revision`` in one transaction."""
    from alembic import command

    def down(sync_conn):  # type: ignore[no-untyped-def]
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(down)


async def test_event_id_index_migration_keeps_rows_and_uniqueness(make_settings):
    """0007 keeps the events stored at 0006, still refuses a second event_id, and indexes only the rows that have one."""
    from sqlalchemy import func, insert
    from sqlalchemy.exc import IntegrityError

    engine = create_engine(make_settings())
    now = datetime(2026, 1, 13, tzinfo=UTC)
    row = dict(domain="D", metric="m", success=True, created_at=now, event_id=None)
    try:
        await migrate.upgrade(engine, "0006_window_index")
        async with engine.begin() as conn:
            await conn.execute(insert(KpiEvent.__table__), [row, row, {**row, "event_id": "e1"}])
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("kpi_event"))
            uniques = await conn.run_sync(lambda c: inspect(c).get_unique_constraints("kpi_event"))
            count = (await conn.execute(select(func.count()).select_from(KpiEvent.__table__))).scalar_one()
        index = [ix for ix in indexes if ix["name"] == "uq_kpi_event_event_id"]
        assert index and index[0]["unique"] and index[0]["column_names"] == ["event_id"]
        where = {k: str(v) for k, v in index[0].get("dialect_options", {}).items() if k.endswith("_where")}
        assert [w.replace("(", "").replace(")", "") for w in where.values()] == ["event_id IS NOT NULL"]
        assert not [u for u in uniques if u["column_names"] == ["event_id"]]
        assert count == 3
        async with engine.begin() as conn:
            await conn.execute(insert(KpiEvent.__table__), [row, row])  # NULL event_ids are not unique
        refused = False
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(KpiEvent.__table__), [{**row, "event_id": "e1"}])
        except IntegrityError:
            refused = True
        assert refused
        await _downgrade(engine, "0006_window_index")
        async with engine.connect() as conn:
            uniques = await conn.run_sync(lambda c: inspect(c).get_unique_constraints("kpi_event"))
        assert [u["column_names"] for u in uniques if u["name"] == "uq_kpi_event_event_id"] == [["event_id"]]
        assert await migrate.current_revision(engine) == "0006_window_index"
    finally:
        await engine.dispose()


async def test_seed_policies_move_to_the_new_default_guard_unless_someone_set_theirs(make_settings):
    """0009 moves the seed policies still as 0002 wrote them from evidence to combined, audited; one a person
    upserted keeps its guard; the downgrade moves them back."""
    from sqlalchemy import text

    engine = create_engine(make_settings())

    async def guards() -> dict[tuple[str, str], str]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT domain, metric, guard FROM regression_policy"))
            return {(d, m): g for d, m, g in rows}

    try:
        await migrate.upgrade(engine, "0008_combined_guard")
        async with engine.begin() as conn:  # as a database seeded before combined was the default holds them
            await conn.execute(text("UPDATE regression_policy SET guard = 'evidence'"))
            await conn.execute(text("UPDATE regression_policy SET changed_by = 'ops' WHERE domain = 'CAPITAL'"))
        seeded = await guards()
        capital = ("CAPITAL", "roi_event")
        assert set(seeded.values()) == {"evidence"} and len(seeded) == 4 and capital in seeded
        await migrate.upgrade(engine)
        moved = await guards()
        assert moved[capital] == "evidence"
        assert {k for k, g in moved.items() if g == "combined"} == set(seeded) - {capital}
        async with engine.connect() as conn:
            entries = (await conn.execute(text(
                "SELECT domain, metric, source, action FROM audit_event WHERE kind = 'policy_change'"))).all()
        assert sorted((e[0], e[1]) for e in entries) == sorted(set(seeded) - {capital})
        assert {(e[2], e[3]) for e in entries} == {("migration", "UPDATE")}
        await _downgrade(engine, "0008_combined_guard")
        assert set((await guards()).values()) == {"evidence"}
    finally:
        await engine.dispose()
