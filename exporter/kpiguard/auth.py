"""Bearer tokens per scope, compared in constant time.

Scopes: ``ingest`` (writing events), ``webhook`` (Alertmanager), ``admin`` (policies, kill switch;
an admin token is valid for every scope) and ``read`` (any valid token). With no token configured
at all, the API is open, which settings only allow on a loopback address.
"""

from __future__ import annotations

import enum
import functools
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from kpiguard.errors import Forbidden, Unauthorized
from kpiguard.keys import SETTINGS
from kpiguard.settings import Settings


class Scope(enum.StrEnum):
    """What a token may do."""

    READ = "read"
    INGEST = "ingest"
    WEBHOOK = "webhook"
    ADMIN = "admin"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_scopes(settings: Settings, token: str) -> set[Scope]:
    """The scopes a presented token carries (empty for an unknown token)."""
    scopes: set[Scope] = set()
    presented = token.encode()
    for scope, tokens in (
        (Scope.INGEST, settings.ingest_tokens),
        (Scope.WEBHOOK, settings.webhook_tokens),
        (Scope.ADMIN, settings.admin_tokens),
    ):
        for known in tokens:
            # compare every token, matched or not, so that timing says nothing about which matched
            if hmac.compare_digest(presented, known.get_secret_value().encode()):
                scopes.add(scope)
    return scopes


def authorize(request: web.Request, scope: Scope) -> None:
    """Raise Unauthorized or Forbidden unless the request's bearer token carries ``scope``."""
    settings = request.app[SETTINGS]
    if not settings.auth_enabled:
        return
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)", field="Authorization")
    scopes = token_scopes(settings, token.strip())
    if not scopes:
        raise Unauthorized("unknown bearer token", field="Authorization")
    if scope is Scope.READ or scope in scopes or Scope.ADMIN in scopes:
        return
    raise Forbidden(f"this token lacks the {scope} scope", field="Authorization", choices=[scope.value, "admin"])


def requires(scope: Scope) -> Callable[[Handler], Handler]:
    """Decorate a handler so that it runs only for a token with ``scope``."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            authorize(request, scope)
            return await handler(request)

        return guarded

    return wrap
