"""alertmanager/alertmanager.yml and its template, checked and routed by the real amtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "alertmanager" / "templates"
WEBHOOK_URL = "http://kpiguard:8000/api/v1/alertmanager/webhook"
TOKEN_FILE = "/etc/alertmanager/secrets/kpiguard-webhook-token"


def _amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run amtool, or skip saying how to get it."""
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool is not installed (apt-get install prometheus-alertmanager)")
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60)


def _config() -> dict[str, Any]:
    """The configuration as plain YAML data."""
    return yaml.safe_load(CONFIG.read_text())


def _receiver(config: dict[str, Any], name: str) -> dict[str, Any]:
    """One receiver by name."""
    return next(r for r in config["receivers"] if r["name"] == name)


def test_check_config() -> None:
    """amtool check-config accepts the file, its template included."""
    result = _amtool("check-config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=KpiguardCountWindowRegression", "action=THROTTLE", "domain=WHOLESALE"], "kpiguard,people"),
        (["alertname=KpiguardCountWindowRegression", "action=KILL_SWITCH", "domain=CAPITAL"], "kpiguard,people"),
        (["alertname=KpiguardTimeWindowRegression", "action=THROTTLE", "domain=BUYER_MATCH"], "kpiguard,people"),
        (["alertname=KpiguardCountWindowRegression", "action=THROTTLE", "dry_run=true"], "people"),
        (["alertname=KpiguardCountWindowRegression", "action=PAUSE", "domain=WHOLESALE"], "default"),
        (["alertname=Watchdog"], "default"),
        (["alertname=InstanceDown", "severity=critical"], "default"),
    ],
)
def test_routes(labels: list[str], receivers: str) -> None:
    """THROTTLE and KILL_SWITCH reach kpiguard and then people; dry runs only people; anything else the default."""
    result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receivers}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_route_test_can_fail() -> None:
    """The routes test notices a wrong expectation, so the cases above are real checks."""
    result = _amtool(
        "config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=default", "action=THROTTLE",
    )
    assert result.returncode != 0


def test_kpiguard_receiver() -> None:
    """The webhook URL, resolved notifications, and a bearer token read from a file."""
    (webhook,) = _receiver(_config(), "kpiguard")["webhook_configs"]
    assert webhook["url"] == WEBHOOK_URL
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": TOKEN_FILE}


def test_grouping_and_continue() -> None:
    """Grouped by alertname, domain and metric; the enforcement routes continue so that people hear too."""
    route = _config()["route"]
    assert route["group_by"] == ["alertname", "domain", "metric"]
    kpiguard_routes = [r for r in route["routes"] if r["receiver"] == "kpiguard"]
    assert sorted(r["matchers"][0] for r in kpiguard_routes) == ['action="KILL_SWITCH"', 'action="THROTTLE"']
    assert all(r["continue"] is True and r["group_wait"] == "0s" for r in kpiguard_routes)


def test_kill_switch_inhibits_throttle_in_the_same_domain() -> None:
    """A real (not dry-run) KILL_SWITCH silences the THROTTLE alerts of its domain."""
    (rule,) = _config()["inhibit_rules"]
    assert rule == {
        "source_matchers": ['action="KILL_SWITCH"', 'dry_run!="true"'],
        "target_matchers": ['action="THROTTLE"'],
        "equal": ["domain"],
    }


def _render(tmp_path: Path, status: str) -> str:
    """Render the title and text templates for one alert of the given status."""
    alert = {
        "status": status,
        "labels": {"alertname": "KpiguardCountWindowRegression", "domain": "WHOLESALE", "metric": "contract_rate",
                   "action": "THROTTLE", "severity": "warning"},
        "annotations": {"summary": "dropped 78.95%", "description": "why", "runbook_url": "https://rb",
                        "dashboard_url": "https://dash"},
        "startsAt": "2026-01-13T14:32:00Z",
        "endsAt": "2026-01-13T15:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "1",
    }
    data = {"receiver": "people", "status": status, "alerts": [alert], "groupLabels": {},
            "commonLabels": alert["labels"], "commonAnnotations": {}, "externalURL": "http://am"}
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = _amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.data={path}",
                     '--template.text={{ template "kpiguard.title" . }}\n{{ template "kpiguard.text" . }}')
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_template_renders_firing_and_resolved(tmp_path: Path) -> None:
    """People get the action, the numbers and the links; a resolution says it releases nothing by itself."""
    firing = _render(tmp_path, "firing")
    assert firing.startswith("[FIRING:1] THROTTLE WHOLESALE.contract_rate - KpiguardCountWindowRegression")
    for text in ("dropped 78.95%", "Runbook:   https://rb", "Dashboard: https://dash", "http://prometheus/graph"):
        assert text in firing
    resolved = _render(tmp_path, "resolved")
    assert resolved.startswith("[RESOLVED] THROTTLE")
    assert "releases nothing by itself" in resolved and "resolved 2026-01-13 15:00:00" in resolved


def test_the_e2e_rewrite_keeps_a_valid_config(tmp_path: Path) -> None:
    """Loaded as plain YAML, the URL, token file, timings and template path can be rewritten into a valid copy."""
    config = _config()
    webhook = _receiver(config, "kpiguard")["webhook_configs"][0]
    webhook["url"] = "http://127.0.0.1:54321/api/v1/alertmanager/webhook"
    token = tmp_path / "token"
    token.write_text("secret\n")
    webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    config["templates"] = [str(TEMPLATES / "*.tmpl")]
    for route in [config["route"], *config["route"]["routes"]]:
        route.update({"group_wait": "0s", "group_interval": "200ms", "repeat_interval": "1h"})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = _amtool("check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    routed = _amtool("config", "routes", "test", f"--config.file={path}", "action=KILL_SWITCH")
    assert routed.stdout.strip() == "kpiguard,people"
