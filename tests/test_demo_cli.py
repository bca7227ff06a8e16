"""``kpiguard demo`` and ``kpiguard report`` against a live ``kpiguard serve``, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from _proc import free_port, kpiguard_env, run_kpiguard, start_kpiguard, stop


def _get(base: str, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def _post(base: str, path: str, body: dict, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _env(database, **extra: str) -> dict[str, str]:
    settings = {"database_url": database.url, "auto_migrate": "true", "evaluation_interval_seconds": "0", **extra}
    if database.schema:
        settings["database_schema"] = database.schema
    return kpiguard_env(**settings)


def _assert_left_clean(base: str, token: str | None = None) -> None:
    golive = _get(base, "/api/governance/go-live/state", token)
    assert golive["kill_switch_engaged"] is False
    engines = {p["engine"]: p["enabled"] for p in _get(base, "/api/governance/risk/policies", token)}
    assert all(engines[e] for e in ("DEMO_WHOLESALE", "DEMO_BUYER_MATCH", "DEMO_CAPITAL"))
    assert not [p for p in _get(base, "/api/governance/regression/policies", token)
                if p["domain"].startswith("DEMO_") and p["enabled"]]
    assert not [s for s in _get(base, "/api/governance/regression/state", token) if s["triggered"]]


def test_demo_plays_the_seed_twice_and_report_shows_it(tmp_path, database):
    """The demo runs the flow and three scenarios in under a minute, twice on one database, leaving it clean."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(database)
    proc = start_kpiguard(cwd=tmp_path, env=env, port=port)
    try:
        started = time.monotonic()
        first = run_kpiguard("demo", "--url", base, cwd=tmp_path, env=env)
        elapsed = time.monotonic() - started
        assert first.returncode == 0, first.stdout + first.stderr
        assert elapsed < 60
        lines = first.stdout.splitlines()
        assert len([ln for ln in lines if ln.startswith("[")]) == 14
        out = first.stdout
        for needle in ("flow 3: evaluate (baseline good)       state: triggered=false",
                       "flow 5: evaluate again                 state: triggered=true drop=0.789 (0.950 -> 0.200)",
                       "risk DEMO_WHOLESALE 10000: DENIED policy_disabled | gate PROD_EXEC: 403 policy_disabled",
                       "released RELEASE_THROTTLE DEMO_WHOLESALE | risk DEMO_WHOLESALE 10000: ok",
                       "state: triggered=true drop=0.368 (0.950 -> 0.600)",
                       "state: triggered=false drop=0.176 (0.850 -> 0.700) < 0.25",
                       "kill switch ENGAGED | risk DEMO_WHOLESALE 10000: DENIED kill_switch_engaged"
                       " | gate PROD_EXEC: 403 kill_switch_engaged",
                       "kill switch released by kpiguard-demo", "demo finished in"):
            assert needle in out, needle
        assert "100% clean up" in first.stderr  # the progress bar
        _assert_left_clean(base)
        second = run_kpiguard("demo", "--url", base, cwd=tmp_path, env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        _assert_left_clean(base)
        weekly = _get(base, "/api/governance/weekly")["overall"]
        assert weekly["by_action"] == {"THROTTLE": 4, "KILL_SWITCH": 2} and weekly["open"] == 0

        report = run_kpiguard("report", "--url", base, cwd=tmp_path, env=env)
        assert report.returncode == 0, report.stderr
        for needle in ("1. Go-live", "kill switch: released", "2. Risk guard", "throttled engines: none",
                       "DEMO_WHOLESALE: kill_switch_engaged 2, policy_disabled 4", "3. Regressions",
                       "triggered: none", "4. Decide", "Regressions caught and remediated this week",
                       "tripwire triggers: 6 (THROTTLE : KILL_SWITCH = 4:2)"):
            assert needle in report.stdout, needle
        as_json = json.loads(run_kpiguard("report", "--json", "--url", base, cwd=tmp_path, env=env).stdout)
        assert as_json["decisions"][0]["code"] == "caught_and_fixed"
        assert as_json["risk"]["denials_today"]["by_engine"]["DEMO_WHOLESALE"]["policy_disabled"] == 4
        # `kpiguard report | head -0`: the reader is gone before the report is written
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            piped = subprocess.run([sys.executable, "-m", "kpiguard", "report", "--url", base], cwd=tmp_path, env=env,
                                   stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write_end)
        assert piped.returncode == 1 and piped.stderr == ""

        # a kill switch someone else engaged: the demo refuses to start and leaves it engaged
        _post(base, "/api/governance/go-live/kill-switch", {"engaged": True, "reason": "incident 42"})
        refused = run_kpiguard("demo", "--url", base, cwd=tmp_path, env=env)
        assert refused.returncode == 1 and "the kill switch is engaged (incident 42)" in refused.stdout
        assert _get(base, "/api/governance/go-live/state")["kill_switch_engaged"] is True
        report = run_kpiguard("report", "--url", base, cwd=tmp_path, env=env)
        assert "System degraded, fix required -> Manual remediation" in report.stdout
        assert "why: engaged by hand" in report.stdout
    finally:
        stop(proc)


def test_demo_and_report_with_tokens(tmp_path):
    """With tokens the commands send --token: none is a 401, an ingest token cannot run the demo (403)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = kpiguard_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'kg.db'}", admin_tokens="s3cret",
                       ingest_tokens="ing")
    proc = start_kpiguard(cwd=tmp_path, env=env, port=port)
    try:
        denied = run_kpiguard("report", "--url", base, cwd=tmp_path, env=env)
        assert denied.returncode == 1 and "401" in denied.stderr and "Authorization" in denied.stderr
        weak = run_kpiguard("demo", "--url", base, "--token", "ing", cwd=tmp_path, env=env)
        assert weak.returncode == 1 and "403" in weak.stdout
        assert _get(base, "/api/governance/go-live/state", "s3cret")["kill_switch_engaged"] is False
        assert run_kpiguard("report", "--url", base, "--token", "ing", cwd=tmp_path, env=env).returncode == 0
    finally:
        stop(proc)


def test_commands_say_when_the_service_is_unreachable(tmp_path):
    """Nothing listening: report and demo exit 1 naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    for cmd in ("report", "demo"):
        result = run_kpiguard(cmd, "--url", url, cwd=tmp_path, env=kpiguard_env())
        assert result.returncode == 1
        assert f"cannot reach {url}" in result.stderr + result.stdout
