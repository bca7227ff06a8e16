"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import re
import weakref
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as _pm
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.utils import floatToGoString
from sqlalchemy import text

from kpiguard.api._json import json_response
from kpiguard.db import migrate
from kpiguard.keys import ENGINE, METRICS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """The database answers and its schema is at the code's head revision."""
    engine = request.app[ENGINE]
    head = migrate.head_revision()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await migrate.current_revision(engine)
    except Exception as exc:  # any failure to reach the store means not ready
        return json_response({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503)
    if current != head:
        return json_response(
            {"status": "unavailable", "database": "migrations pending: run `kpiguard db upgrade`",
             "revision": current, "head": head},
            503,
        )
    return json_response({"status": "ready", "revision": current})


_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class _One:
    """One collector seen as a registry, for ``generate_latest``."""

    def __init__(self, collector: Any) -> None:
        self._collector = collector

    def collect(self) -> Any:
        return self._collector.collect()


class TextExposition:
    """``generate_latest``'s text format, byte for byte, with every series' name and labels rendered once.

    Profiled: at 10,000 series ``generate_latest`` spent its time building a merged label dict and a
    Sample per series in ``collect()`` and sorting and escaping the labels again on every scrape.
    Here the labelled counters, gauges and histograms are read child by child and each series keeps
    its rendered ``name{labels} `` prefix; any other collector goes through ``generate_latest``.
    A registry this does not understand is handed to ``generate_latest`` whole.
    """

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    def render(self, registry: CollectorRegistry) -> bytes:
        """The registry in the Prometheus text format 0.0.4."""
        try:
            with registry._lock:
                collectors = list(registry._collector_to_names)
                if registry._target_info:
                    return generate_latest(registry)
        except AttributeError:
            return generate_latest(registry)
        out: list[str] = []
        children = 0
        for c in collectors:
            if self._fast(c):
                children += self._render(c, out)
            else:
                out.append(generate_latest(_One(c)).decode("utf-8"))  # type: ignore[arg-type]
        if len(self._prefixes) > 2 * children + 1000:  # series removed from their metrics: forget them
            self._prefixes.clear()
        return "".join(out).encode("utf-8")

    @staticmethod
    def _fast(c: Any) -> bool:
        return (
            type(c) in (Counter, Gauge, Histogram) and bool(getattr(c, "_labelnames", ())) and c._is_parent()
            and bool(_LEGACY_NAME.match(c._name)) and all(_LEGACY_NAME.match(n) for n in c._labelnames)
        )

    def _render(self, c: Any, out: list[str]) -> int:
        name = c._name
        kind = c._type
        head = f"{name}_total" if kind == "counter" else name
        doc = c._documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {head} {doc}\n# TYPE {head} {kind}\n")
        created_lines: list[str] = []
        use_created = _pm._use_created
        with c._lock:
            items = list(c._metrics.items())
        for labelvalues, child in items:
            if kind == "histogram":
                values = self._histogram(child, use_created)
            elif kind == "counter":
                values = [child._value.get(), child._created] if use_created else [child._value.get()]
            else:
                values = [s.value for s in child._child_samples()]
            key = (name, labelvalues)
            prefixes = self._prefixes.get(key)
            if prefixes is None or len(prefixes) != len(values):
                prefixes = self._prefixes[key] = self._prefixes_of(c, labelvalues, child)
            for prefix, value in zip(prefixes, values, strict=True):
                line = f"{prefix}{floatToGoString(value)}\n"
                if prefix.startswith(f"{name}_created{{"):
                    created_lines.append(line)
                else:
                    out.append(line)
        if created_lines:
            out.append(f"# HELP {name}_created {doc}\n# TYPE {name}_created gauge\n")
            out.extend(created_lines)
        return len(items)

    @staticmethod
    def _histogram(child: Any, use_created: bool) -> list[float]:
        values = []
        acc = 0.0
        for bucket in child._buckets:
            acc += bucket.get()
            values.append(acc)
        values.append(acc)
        if child._upper_bounds[0] >= 0:
            values.append(child._sum.get())
        if use_created:
            values.append(child._created)
        return values

    @staticmethod
    def _prefixes_of(c: Any, labelvalues: tuple[str, ...], child: Any) -> list[str]:
        base = list(zip(c._labelnames, labelvalues, strict=True))
        out = []
        for s in child._child_samples():
            labels = sorted(base + list(s.labels.items()))
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{c._name}{s.name}{{{text}}} ")
        return out


_EXPOSITIONS: weakref.WeakKeyDictionary[CollectorRegistry, TextExposition] = weakref.WeakKeyDictionary()


def text_exposition(registry: CollectorRegistry) -> TextExposition:
    """The registry's exposition (with its rendered prefixes), created on first use."""
    exposition = _EXPOSITIONS.get(registry)
    if exposition is None:
        exposition = _EXPOSITIONS[registry] = TextExposition()
    return exposition


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Expose the app's registry in the format the scraper asks for."""
    registry = request.app[METRICS].registry
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    if encoder is generate_latest:  # the text format 0.0.4 with default escaping, what Prometheus asks for
        body = text_exposition(registry).render(registry)
    else:
        body = encoder(registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
