"""An aiohttp middleware for the applications kpiguard guards: PROD_EXEC requests obey the kill switch and throttles.

Usage in a guarded service::

    from kpiguard.enforcement import HttpGateSource, execution_class_middleware

    gate = HttpGateSource("http://kpiguard:8000", token="...")
    app = web.Application(middlewares=[execution_class_middleware(gate)])

A request is PROD_EXEC when its ``X-Execution-Class`` header says so, or when its route's name is
listed in ``routes`` (name -> (class, engine)); its engine comes from the route or the ``X-Engine`` header.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard.enforcement._gate import PROD_EXEC, GateDecision, decide


class GateSource(Protocol):
    """Where the middleware learns whether a request may run."""

    async def decide(self, engine: str | None, exec_class: str) -> GateDecision:
        """The decision for this engine and execution class."""
        ...


class DatabaseGateSource:
    """Reads kpiguard's database directly (for services that share it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def decide(self, engine: str | None, exec_class: str) -> GateDecision:
        """Decide from the go-live state and the engine's risk policy."""
        async with self._sessions() as session:
            return await decide(session, engine, exec_class)


class HttpGateSource:
    """Asks kpiguard's ``/api/governance/gate``, caching each answer for ``ttl`` seconds.

    If kpiguard cannot be reached, PROD_EXEC is refused (``fail_open=False``, the default) or allowed.
    """

    def __init__(self, base_url: str, *, token: str | None = None, ttl: float = 0.5, fail_open: bool = False,
                 timeout: float = 2.0) -> None:
        self._url = base_url.rstrip("/") + "/api/governance/gate"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ttl = ttl
        self._fail_open = fail_open
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: dict[tuple[str | None, str], tuple[float, GateDecision]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def decide(self, engine: str | None, exec_class: str) -> GateDecision:
        """Ask the gate (or the cache)."""
        key = (engine, exec_class)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        params = {"class": exec_class, **({"engine": engine} if engine else {})}
        try:
            async with self._session.get(self._url, params=params, headers=self._headers) as resp:
                if resp.status == 204:
                    decision = GateDecision(True, None, engine, exec_class)
                elif resp.status == 403:
                    body = await resp.json()
                    err = body.get("error", {})
                    decision = GateDecision(False, err.get("code"), engine, exec_class, err.get("message"))
                else:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return GateDecision(self._fail_open, None if self._fail_open else "gate_unavailable", engine, exec_class,
                                f"kpiguard gate unreachable: {type(exc).__name__}")
        self._cache[key] = (now, decision)
        return decision

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


def execution_class_middleware(
    source: GateSource,
    *,
    routes: Mapping[str, tuple[str, str | None]] | None = None,
    class_header: str = "X-Execution-Class",
    engine_header: str = "X-Engine",
) -> web.middleware:
    """A middleware answering 403 JSON to PROD_EXEC requests while the kill switch is on or their engine throttled."""
    by_route = dict(routes or {})

    @web.middleware
    async def middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        exec_class, engine = by_route.get(name, (None, None)) if name else (None, None)
        exec_class = request.headers.get(class_header, exec_class)
        engine = engine or request.headers.get(engine_header)
        if exec_class == PROD_EXEC:
            decision = await source.decide(engine, exec_class)
            if not decision.allowed:
                return web.json_response(decision.to_json(), status=403)
        return await handler(request)

    return middleware
