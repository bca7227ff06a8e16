"""HTTP routes, one module per area."""

from aiohttp import web

from kpiguard.api import controlplane, governance, health, kpi, monitor, webhook


def setup_routes(app: web.Application) -> None:
    """Register every route on ``app``."""
    app.add_routes(health.routes)
    app.add_routes(kpi.routes)
    app.add_routes(governance.routes)
    app.add_routes(webhook.routes)
    app.add_routes(monitor.routes)
    app.add_routes(controlplane.routes)


__all__ = ["setup_routes"]
