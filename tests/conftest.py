"""Shared fixtures: every storage, API and enforcement test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from kpiguard.app import create_app
from kpiguard.keys import SESSIONS
from kpiguard.settings import Settings, load_settings

PG_DSN = os.environ.get("KPIGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL = PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Database:
    """Where one test's data lives: an SQLite file or a PostgreSQL schema of its own."""

    kind: str
    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty database for one test, removed afterwards."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'kpiguard.db'}")
        return
    schema = f"kg_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield Database("postgresql", PG_URL, schema)
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
def make_settings(database: Database) -> Callable[..., Settings]:
    """Build settings on the test's database, with overrides."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": database.url,
            "database_schema": database.schema,
            "auto_migrate": True,
            "database_pool_size": 5,
        }
        base.update(overrides)
        return load_settings(**base)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default settings on the test's database."""
    return make_settings()


@pytest.fixture
async def client(database: Database, aiohttp_client: Any, settings: Settings) -> TestClient:
    """An in-process client on an app from the factory, with a fresh registry."""
    # database comes first so that it is torn down last: the app (and its background tasks) stops
    # before the schema is dropped, or a query still running would deadlock with DROP SCHEMA.
    return await aiohttp_client(create_app(settings, CollectorRegistry()))


@pytest.fixture
def make_client(
    database: Database, aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> Callable[..., Any]:
    """Build a client on an app with overridden settings (torn down before the database, as ``client``)."""

    async def make(**overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(make_settings(**overrides), CollectorRegistry()))

    return make


async def count_rows(client: TestClient, model: Any) -> int:
    """How many rows the model's table holds."""
    async with client.app[SESSIONS]() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def metric_samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape /metrics and index every sample by name and labels."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    """One sample's value, or None if absent."""
    return samples.get((name, frozenset(labels.items())))
