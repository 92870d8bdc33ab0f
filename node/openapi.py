"""``GET /openapi.json``: the node's HTTP API as an OpenAPI 3 document.

The document is the checked-in file ``node/openapi.json`` (package data),
served as it is. ``tests/test_openapi.py`` keeps it true: every route and
method of the app is in it, every path in it is a route, and a fuzzer checks
the answers of a live node against it.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .context import NodeContext
from .handlers import allow

__all__ = ["OpenApiRoutes", "load_document"]

_HEADERS = {"Content-Type": "application/json"}


def load_document() -> bytes:
    """The OpenAPI document, as the bytes of ``node/openapi.json``."""
    return resources.files("node").joinpath("openapi.json").read_bytes()


class OpenApiRoutes:
    """``/openapi.json``, public like ``/check-alive``: a caller needs the
    document to learn how to authenticate."""

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self._document = load_document()  # read once: it never changes while the node runs

    def register(self, app: web.Application) -> None:
        self.context.guard.add_route(app, "/openapi.json", self.openapi, public=True)

    async def openapi(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        return web.Response(body=self._document, headers=_HEADERS)
