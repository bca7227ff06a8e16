"""The end-to-end stack: kpiguard, the real Prometheus and Alertmanager, and a trivial webhook, on loopback.

The Prometheus and Alertmanager configurations are the repo's own files (rules/, alertmanager/), loaded as
YAML and rewritten here for loopback ports and test intervals, never a second hand-written copy.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from _proc import REPO, free_port, kpiguard_env, start_kpiguard, stop

RULES_DIR = REPO / "rules"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = REPO / "alertmanager" / "templates"
PROMETHEUS_CONFIG = RULES_DIR / "prometheus.yml"  # the docker-compose one, when it exists
WEBHOOK_PATH = "/api/v1/alertmanager/webhook"
BINARIES = ("prometheus", "prometheus-alertmanager", "promtool", "amtool")

# Test intervals. Prometheus: one scrape and one evaluation a second (the notes' measured loop). Alertmanager:
# send a new group at once, flush changes every 200 ms, and re-send a firing group every second so that the
# replay test sees Alertmanager's own repeats without waiting an hour.
SCRAPE_INTERVAL = "1s"
EVALUATION_INTERVAL = "1s"
ROUTE_TIMING = {"group_wait": "0s", "group_interval": "200ms", "repeat_interval": "1s"}

T = TypeVar("T")


def require_binaries() -> dict[str, str]:
    """The path of every binary the stack needs; raise naming the missing ones (tests/run.sh installs them)."""
    found = {name: shutil.which(name) for name in BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: run tests/run.sh as root, or "
            "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
        )
    return {name: str(path) for name, path in found.items()}


# --- configuration rewrites (pure) ------------------------------------------------------------------------------

def alertmanager_config(base: dict[str, Any], *, webhook_url: str, credentials_file: Path, templates_dir: Path,
                        people_webhook_url: str | None = None) -> dict[str, Any]:
    """The repo's Alertmanager config rewritten for the test: loopback URL, token file, template path, timings.

    ``people_webhook_url`` gives the documented-but-empty ``people`` receiver a webhook: the enforcement routes
    continue to it, so the trivial peer hears the very alerts kpiguard acts on, in the same run.
    """
    config = copy.deepcopy(base)
    receivers = {r["name"]: r for r in config["receivers"]}
    (webhook,) = receivers["kpiguard"]["webhook_configs"]
    webhook["url"] = webhook_url
    webhook["http_config"]["authorization"]["credentials_file"] = str(credentials_file)
    config["templates"] = [str(templates_dir / Path(t).name) for t in config.get("templates", [])]
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(ROUTE_TIMING)
    if people_webhook_url is not None:
        receivers["people"]["webhook_configs"] = [{"url": people_webhook_url, "send_resolved": True}]
    return config


def prometheus_config(base: dict[str, Any] | None, *, targets: dict[str, str], alertmanager: str,
                      rules_dir: Path) -> dict[str, Any]:
    """The Prometheus config for the test: ``base`` (rules/prometheus.yml) rewritten, or one built from scratch.

    ``targets`` maps job names to loopback addresses; jobs of ``base`` not in it are dropped (their hosts
    exist only in docker-compose). Rule files resolve against ``rules_dir`` by file name, because the compose
    file mounts rules/ elsewhere.
    """
    if base is None:
        base = {
            "rule_files": ["*.rules.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager"]}]}]},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [job]}]} for job in targets],
        }
    config = copy.deepcopy(base)
    config["global"] = {**config.get("global", {}), "scrape_interval": SCRAPE_INTERVAL,
                        "evaluation_interval": EVALUATION_INTERVAL}
    config["rule_files"] = [str(rules_dir / Path(f).name) for f in config.get("rule_files", [])]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    jobs = []
    for job in config.get("scrape_configs", []):
        if job["job_name"] not in targets:
            continue
        job = {k: v for k, v in job.items() if k not in ("static_configs", "scrape_timeout")}
        job.update(scrape_interval=SCRAPE_INTERVAL, static_configs=[{"targets": [targets[job["job_name"]]]}])
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def check(tool: str, *args: str) -> None:
    """Run promtool or amtool on a rewritten file; raise with its output if it rejects it."""
    result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


# --- HTTP -------------------------------------------------------------------------------------------------------

def http(method: str, url: str, body: Any = None, token: str | None = None,
         timeout: float = 10) -> tuple[int, Any]:
    """One request with an optional JSON body and bearer token; (status, JSON answer or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(interval)


# --- the trivial webhook ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrival:
    """One notification as the trivial webhook got it."""

    at: float  # time.monotonic() when the request arrived
    payload: dict[str, Any]


class TrivialWebhook:
    """The smallest possible Alertmanager receiver: an aiohttp handler that records arrival times, in a thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="trivial-webhook", daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        payload = await request.json()
        with self._lock:
            self._arrivals.append(Arrival(at, payload))
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        """Serve on 127.0.0.1:port."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the trivial webhook did not start")

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def arrivals(self, *, since: float, status: str, **labels: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, alert) of every alert with ``status`` and ``labels`` that arrived after ``since``."""
        with self._lock:
            got = list(self._arrivals)
        return [(a.at, alert) for a in got if a.at > since for alert in a.payload["alerts"]
                if alert["status"] == status and all(alert["labels"].get(k) == v for k, v in labels.items())]

    def notifications(self) -> list[Arrival]:
        """Every notification so far."""
        with self._lock:
            return list(self._arrivals)


# --- the stack --------------------------------------------------------------------------------------------------

@dataclass
class Stack:
    """The running processes and how to reach them."""

    workdir: Path
    kpiguard: str
    prometheus: str
    alertmanager: str
    admin_token: str
    webhook_token: str
    trivial: TrivialWebhook
    startup_seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        """Call kpiguard's API (admin token unless another is given)."""
        return http(method, self.kpiguard + path, body, token or self.admin_token)

    def get(self, path: str) -> Any:
        """GET from kpiguard, asserting 200."""
        status, body = self.api("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        return body

    def metric(self, name: str, **labels: str) -> float:
        """One sample of kpiguard's own /metrics, 0 if absent."""
        status, text = http("GET", self.kpiguard + "/metrics")
        assert status == 200
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return 0.0

    def promql(self, query: str) -> dict[str, Any]:
        """Prometheus's answer to an instant query (the whole JSON, status included)."""
        url = self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        return http("GET", url)[1]

    def prometheus_alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Prometheus's pending and firing alerts whose labels include ``labels``."""
        alerts = http("GET", self.prometheus + "/api/v1/alerts")[1]["data"]["alerts"]
        return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=1)[0] == 200
    except OSError:
        return False


def _targets_up(prometheus: str) -> bool:
    status, body = http("GET", prometheus + "/api/v1/targets?state=active")
    targets = body["data"]["activeTargets"] if status == 200 else []
    return bool(targets) and all(t["health"] == "up" for t in targets)


def _alertmanager_discovered(prometheus: str) -> bool:
    status, body = http("GET", prometheus + "/api/v1/alertmanagers")
    return status == 200 and len(body["data"]["activeAlertmanagers"]) > 0


def _popen(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


class Processes:
    """Starts the stack in ``workdir`` and stops everything it started, in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[subprocess.Popen[bytes]] = []
        self._trivial: TrivialWebhook | None = None

    def start(self) -> Stack:
        """Write and check the configs, start everything, and wait for real readiness."""
        began = time.monotonic()
        bins = require_binaries()
        d = self.workdir
        kp, pp, ap = free_port(), free_port(), free_port()
        admin, hook = "e2e-admin-token", "e2e-webhook-token"
        self._trivial = trivial = TrivialWebhook()
        trivial.start()

        token_file = d / "kpiguard-webhook-token"
        token_file.write_text(hook + "\n")
        am = alertmanager_config(
            yaml.safe_load(ALERTMANAGER_CONFIG.read_text()),
            webhook_url=f"http://127.0.0.1:{kp}{WEBHOOK_PATH}", credentials_file=token_file,
            templates_dir=ALERTMANAGER_TEMPLATES, people_webhook_url=trivial.url,
        )
        (d / "alertmanager.yml").write_text(yaml.safe_dump(am, sort_keys=False))
        base = yaml.safe_load(PROMETHEUS_CONFIG.read_text()) if PROMETHEUS_CONFIG.is_file() else None
        prom = prometheus_config(
            base, rules_dir=RULES_DIR, alertmanager=f"127.0.0.1:{ap}",
            targets={"kpiguard": f"127.0.0.1:{kp}", "prometheus": f"127.0.0.1:{pp}", "alertmanager": f"127.0.0.1:{ap}"},
        )
        (d / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
        check(bins["amtool"], "check-config", str(d / "alertmanager.yml"))
        check(bins["promtool"], "check", "config", str(d / "prometheus.yml"))

        self._procs.append(_popen([
            bins["prometheus-alertmanager"], f"--config.file={d / 'alertmanager.yml'}", f"--storage.path={d / 'am'}",
            f"--web.listen-address=127.0.0.1:{ap}", "--cluster.listen-address=",
        ], d / "alertmanager.log"))
        self._procs.append(_popen([
            bins["prometheus"], f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'prom'}",
            f"--web.listen-address=127.0.0.1:{pp}",
            # generatorURLs then point at this Prometheus, so a test can tell where an alert came from
            f"--web.external-url=http://127.0.0.1:{pp}/",
        ], d / "prometheus.log"))
        env = kpiguard_env(
            database_url=f"sqlite+aiosqlite:///{d / 'kpiguard.db'}", native_enforcement="false",
            evaluation_interval_seconds="1", webhook_tokens=hook, admin_tokens=admin, log_level="WARNING",
        )
        self._procs.append(start_kpiguard(cwd=d, env=env, port=kp))

        stack = Stack(d, f"http://127.0.0.1:{kp}", f"http://127.0.0.1:{pp}", f"http://127.0.0.1:{ap}",
                      admin, hook, trivial)
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; logs in {d}")
        for url in (stack.alertmanager + "/-/ready", stack.prometheus + "/-/ready"):
            wait_for(lambda url=url: _answers(url), timeout=30, what=url, interval=0.05)
        # Prometheus 2.42 applies scrape targets and discovers Alertmanager about 5 s after /-/ready.
        wait_for(lambda: _targets_up(stack.prometheus), timeout=30, what="every scrape target up", interval=0.05)
        wait_for(lambda: _alertmanager_discovered(stack.prometheus), timeout=30,
                 what="Prometheus discovering Alertmanager", interval=0.05)
        stack.startup_seconds = time.monotonic() - began
        return stack

    def stop(self) -> None:
        """SIGTERM every process and wait for it; stop the trivial webhook."""
        for proc in reversed(self._procs):
            stop(proc)
        self._procs.clear()
        if self._trivial is not None:
            self._trivial.stop()
            self._trivial = None
