"""The kpiguard command as a user runs it: a real process on loopback."""

from __future__ import annotations

import json
import urllib.request

import pytest

from _proc import free_port, kpiguard_env, run_kpiguard, start_kpiguard, stop
from conftest import PG_URL


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def test_serve_with_no_configuration_runs_the_seed_curl(tmp_path):
    """`kpiguard serve` in an empty folder creates its SQLite file, stores the seed's event and counts it."""
    port = free_port()
    proc = start_kpiguard(cwd=tmp_path, env=kpiguard_env(), port=port)
    try:
        status, body = _post(f"http://127.0.0.1:{port}/api/governance/regression/kpi",
                             {"domain": "WHOLESALE", "metric": "contract_rate", "success": True, "actor": "system"})
        assert status == 201 and body["id"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'kpiguard_kpi_events_total{domain="WHOLESALE",metric="contract_rate",outcome="success"} 1.0' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ready"
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert (tmp_path / "kpiguard.db").exists()


def test_access_log_is_off_unless_asked_for(tmp_path):
    """`kpiguard serve --access-log` logs each request line with its status; without the flag nothing is logged."""
    for flag, expected in (("--access-log", True), (None, False)):
        port = free_port()
        args = (flag,) if flag else ()
        proc = start_kpiguard(*args, cwd=tmp_path, env=kpiguard_env(), port=port)
        try:
            status, _ = _post(f"http://127.0.0.1:{port}/api/governance/regression/kpi",
                              {"domain": "D", "metric": "m", "success": True})
            assert status == 201
        finally:
            stop(proc)
        log = (tmp_path / f"kpiguard-{port}.log").read_text()
        assert ('"POST /api/governance/regression/kpi HTTP/1.1" 201' in log) is expected, log


def test_invalid_setting_stops_start_up_naming_it(tmp_path):
    """An invalid setting exits 2 with the setting's name and the reason."""
    result = run_kpiguard("serve", cwd=tmp_path, env=kpiguard_env(port="-1"))
    assert result.returncode == 2
    assert "KPIGUARD_PORT" in result.stderr and "greater than or equal to 0" in result.stderr


def test_version(tmp_path):
    """`kpiguard version` prints the version."""
    result = run_kpiguard("version", cwd=tmp_path, env=kpiguard_env())
    assert result.returncode == 0 and result.stdout.startswith("kpiguard ")


@pytest.mark.postgres
async def test_db_upgrade_migrates_postgresql(tmp_path, database):
    """`kpiguard db upgrade` migrates a PostgreSQL schema to head, and a second run changes nothing."""
    if database.kind != "postgresql":
        pytest.skip("PostgreSQL case only")
    env = kpiguard_env(database_url=PG_URL, database_schema=database.schema)
    first = run_kpiguard("db", "upgrade", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "(empty) -> 0" in first.stdout
    second = run_kpiguard("db", "upgrade", cwd=tmp_path, env=env)
    assert second.returncode == 0 and "(empty)" not in second.stdout
