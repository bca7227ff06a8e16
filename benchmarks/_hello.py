"""The peer of the single-event POST: an aiohttp handler that reads the body and answers 201, no work.

    python benchmarks/_hello.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    """Read the body and answer a small JSON object."""
    await request.read()
    return web.json_response({"hello": "world"}, status=201)


async def ok(request: web.Request) -> web.Response:
    """Health check."""
    return web.Response(text="ok")


def main() -> None:
    """Serve on 127.0.0.1:PORT."""
    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_post("/{tail:.*}", hello)
    # As `kpiguard serve` runs by default: asyncio's own event loop, no access log.
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
