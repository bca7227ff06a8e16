"""Bearer tokens per scope."""

from __future__ import annotations

import pytest

from conftest import count_rows
from kpiguard.db.models import KpiEvent

EVENT = {"domain": "D", "metric": "m", "success": True}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "Bearer hook"}, 403),
        ({"Authorization": "Bearer ing"}, 201),
        ({"Authorization": "Bearer adm"}, 201),
    ],
)
async def test_ingest_needs_an_ingest_or_admin_token(make_client, headers, status):
    """With tokens configured, ingest answers 401 without a known token and 403 for a token of another scope."""
    client = await make_client(ingest_tokens=["ing"], webhook_tokens=["hook"], admin_tokens=["adm"])
    resp = await client.post("/api/governance/regression/kpi", json=EVENT, headers=headers)
    assert resp.status == status
    if status >= 400:
        assert (await resp.json())["error"]["field"] == "Authorization"
    assert await count_rows(client, KpiEvent) == (1 if status == 201 else 0)


async def test_metrics_and_health_need_no_token(make_client):
    """/metrics, /healthz and /readyz stay open for scrapers and probes."""
    client = await make_client(admin_tokens=["adm"])
    for path in ("/metrics", "/healthz", "/readyz"):
        assert (await client.get(path)).status == 200


async def test_without_tokens_the_api_is_open(client):
    """With no token configured the seed's unauthenticated curl works."""
    assert (await client.post("/api/governance/regression/kpi", json=EVENT)).status == 201
