"""Where a request keeps the bytes of the node's in-flight budget it reserved.

The budget itself (``InflightBudget``) is the process's, shared with the
memcached door: ``node.core.bounds``. Bodies reserve their size as they are
read (``read_body``) and a request whose body does not fit is refused with
503 (``Retry-After: 1``); big answers are charged while they are written,
under a write timeout. Everything is given back when the request is done
(the route guard).
"""

from __future__ import annotations

from aiohttp import web

from ..core.bounds import InflightBudget

__all__ = ["RESERVED", "InflightBudget"]

# Where a request keeps the bytes it reserved (released by the route guard).
RESERVED = web.RequestKey("reserved", int)
