"""docker-compose.yml, exporter/Dockerfile and rules/prometheus.yml: valid, and every path and port they name is real."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from kpiguard.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"postgres", "kpiguard", "prometheus", "alertmanager", "grafana"}
PUBLISHED = {"kpiguard": 8000, "prometheus": 9090, "alertmanager": 9093, "grafana": 3000}
_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _defaults(value: str) -> str:
    """A compose value with ${VAR:-default} replaced by its default, as an empty environment would see it."""
    return _DEFAULT.sub(lambda m: m.group(2) or "", value)


def _binds(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of the service's bind mounts (those whose source is a relative path)."""
    binds = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            binds.append((REPO / source, PurePosixPath(target)))
    return binds


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a file the container reads comes from in the repository, through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for host, target in _binds(service):
        if wanted == target or target in wanted.parents:
            return host / wanted.relative_to(target)
    return None


def _compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_binary() is None, reason="neither docker-compose nor the docker compose plugin")
def test_compose_config_validates_the_file():
    """`docker-compose config` accepts the file (it validates without a daemon)."""
    binary = _compose_binary()
    assert binary is not None
    result = subprocess.run([*binary, "-f", str(COMPOSE), "config", "-q"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_services_and_healthchecks():
    """The five services are there and each has a healthcheck with a command."""
    services = _compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service["healthcheck"]["test"], name


def test_published_ports_are_the_documented_ones():
    """8000, 9090, 9093 and 3000 are published on the same port number; PostgreSQL is not published."""
    services = _compose()["services"]
    for name, port in PUBLISHED.items():
        mappings = [_defaults(p).rsplit(":", 2)[-2:] for p in services[name]["ports"]]
        assert [str(port), str(port)] in mappings, name
    assert "ports" not in services["postgres"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Dashboards and the full stack"):]
    for port in PUBLISHED.values():
        assert str(port) in section


def test_dependencies_wait_for_health_where_it_matters():
    """kpiguard waits for a healthy PostgreSQL and Grafana for a healthy Prometheus; every dependency exists."""
    services = _compose()["services"]
    assert services["kpiguard"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in {"service_started", "service_healthy", "service_completed_successfully"}


def test_every_mounted_path_and_build_context_exists():
    """Bind mounts, secrets files, the build context and its Dockerfile are all in the repository."""
    document = _compose()
    for name, service in document["services"].items():
        for host, _ in _binds(service):
            assert host.exists(), f"{name} mounts {host}, which is missing"
    for name, secret in document["secrets"].items():
        assert (REPO / secret["file"]).is_file(), name
    build = document["services"]["kpiguard"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize("service, flag", [
    ("prometheus", "--config.file"),
    ("alertmanager", "--config.file"),
])
def test_config_files_reach_the_containers(service, flag):
    """The file each server is told to read is mounted from the repository."""
    spec = _compose()["services"][service]
    path = next(a.split("=", 1)[1] for a in spec["command"] if a.startswith(flag + "="))
    host = _host_path(spec, path)
    assert host is not None, f"{service}: {path} is not under a bind mount"
    if service == "alertmanager" and not host.exists():
        pytest.skip("alertmanager/alertmanager.yml comes from the Alertmanager branch")
    assert host.is_file()


def test_grafana_provisioning_matches_the_mounts():
    """The datasource URL is the prometheus service's port; the dashboards provider reads the dashboards mount."""
    grafana = _compose()["services"]["grafana"]
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())
    prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prometheus["uid"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/kpiguard.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert _host_path(grafana, path) == REPO / "grafana/dashboards"
    assert _host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).is_file()


def test_prometheus_config_points_at_the_compose_services():
    """Prometheus scrapes kpiguard:8000, alerts to alertmanager:9093 and loads the rule files of rules/."""
    config = yaml.safe_load((REPO / "rules/prometheus.yml").read_text())
    kpiguard = next(j for j in config["scrape_configs"] if j["job_name"] == "kpiguard")
    assert kpiguard["static_configs"][0]["targets"] == ["kpiguard:8000"]
    assert kpiguard["scrape_interval"] == "15s"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    matched = {p.name for pattern in config["rule_files"] for p in (REPO / "rules").glob(pattern)}
    assert "kpiguard.rules.yml" in matched


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (tests/run.sh installs it)")
def test_promtool_checks_the_prometheus_config():
    """`promtool check config rules/prometheus.yml` passes, rule files included."""
    result = subprocess.run(["promtool", "check", "config", str(REPO / "rules/prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kpiguard.rules.yml" in result.stdout


def test_webhook_token_is_shared_by_alertmanager_and_kpiguard():
    """kpiguard reads the same token file that Alertmanager's credentials_file names."""
    document = _compose()
    kpiguard, alertmanager = document["services"]["kpiguard"], document["services"]["alertmanager"]
    secret = document["secrets"][kpiguard["secrets"][0]]["file"]
    assert kpiguard["environment"]["KPIGUARD_WEBHOOK_TOKENS_FILE"] == f"/run/secrets/{kpiguard['secrets'][0]}"
    config = _host_path(alertmanager, "/etc/alertmanager/alertmanager.yml")
    if config is None or not config.exists():
        pytest.skip("alertmanager/alertmanager.yml comes from the Alertmanager branch")
    receivers = yaml.safe_load(config.read_text())["receivers"]
    files = {w["http_config"]["authorization"]["credentials_file"]
             for r in receivers for w in r.get("webhook_configs", [])}
    assert files and {_host_path(alertmanager, f) for f in files} == {REPO / secret}


def test_kpiguard_settings_load_from_the_compose_environment(monkeypatch):
    """The environment compose gives kpiguard, defaults filled in and tokens read, allows the public bind."""
    environment = _compose()["services"]["kpiguard"]["environment"]
    for key in list(os.environ):
        if key.startswith("KPIGUARD_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        if not key.endswith("_FILE"):
            monkeypatch.setenv(key, _defaults(str(value)))
    monkeypatch.setenv("KPIGUARD_WEBHOOK_TOKENS", (REPO / "alertmanager/secrets/kpiguard-webhook-token").read_text())
    settings = load_settings(host="0.0.0.0")
    assert settings.auth_enabled and not settings.is_sqlite
    assert settings.database_url.startswith("postgresql+asyncpg://kpiguard:kpiguard@postgres:5432/")


def test_dockerfile_installs_the_package_and_runs_as_a_user():
    """python:3.11-slim, `pip install .` of the copied sources, a non-root USER, the entrypoint installed."""
    text = (REPO / "exporter/Dockerfile").read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert "pip install ." in text
    users = [arg for word, arg in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    copied = [arg.split()[0] for word, arg in instructions if word == "COPY"] + ["README.md"]
    for source in copied:
        assert (REPO / source).exists(), source
    assert "exporter/docker-entrypoint.sh" in text and 'ENTRYPOINT ["kpiguard-entrypoint"]' in text


def _run_entrypoint(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with a fake `kpiguard` on PATH that prints its arguments and the token variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "kpiguard"
    fake.write_text('#!/bin/sh\necho "kpiguard $* admin=${KPIGUARD_ADMIN_TOKENS:-} '
                    'webhook=${KPIGUARD_WEBHOOK_TOKENS:-} file=${KPIGUARD_WEBHOOK_TOKENS_FILE:-unset}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    return subprocess.run(["sh", str(REPO / "exporter/docker-entrypoint.sh"), *args], env=full,
                          capture_output=True, text=True, timeout=30)


def test_entrypoint_reads_token_files_then_migrates_and_serves(tmp_path):
    """Token files become KPIGUARD_*_TOKENS (lines joined by commas); db upgrade runs before serve --host 0.0.0.0."""
    token = tmp_path / "webhook"
    token.write_text("first\nsecond\n")
    result = _run_entrypoint(tmp_path, {"KPIGUARD_WEBHOOK_TOKENS_FILE": str(token), "KPIGUARD_ADMIN_TOKENS": "a"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "kpiguard db upgrade admin=a webhook=first,second file=unset",
        "kpiguard serve --host 0.0.0.0 admin=a webhook=first,second file=unset",
    ]


def test_entrypoint_refuses_a_missing_token_file(tmp_path):
    """A token file that cannot be read stops the container before anything runs, naming the variable."""
    result = _run_entrypoint(tmp_path, {"KPIGUARD_ADMIN_TOKENS_FILE": str(tmp_path / "nope")})
    assert result.returncode == 2
    assert "KPIGUARD_ADMIN_TOKENS_FILE" in result.stderr and result.stdout == ""
