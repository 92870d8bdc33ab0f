"""``GET /openapi.json``: the node's HTTP API as an OpenAPI 3 document.

The document is the checked-in file ``node/http/openapi.json`` (package data),
served as it is. ``tests/test_openapi.py`` keeps it true: every route and
method of the app is in it, every path in it is a route, and a fuzzer checks
the answers of a live node against it.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .errors import allow

__all__ = ["OpenApiRoute", "load_document"]

_HEADERS = {"Content-Type": "application/json"}


def load_document() -> bytes:
    """The OpenAPI document, as the bytes of ``node/http/openapi.json``."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


class OpenApiRoute:
    """``/openapi.json``, public like ``/check-alive``: a caller needs the
    document to learn how to authenticate."""

    def __init__(self) -> None:
        self._document = load_document()  # read once: it never changes while the node runs

    async def openapi(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        return web.Response(body=self._document, headers=_HEADERS)
