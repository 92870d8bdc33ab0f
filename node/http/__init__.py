"""The HTTP door: aiohttp routes around the key service.

It parses requests (``wire``), calls the core once, and renders the answer
or the error (``errors``: the core's ``NodeError``s to statuses). Around
every handler, ``guard`` checks auth, keeps the request id, counts and
times the request; ``server`` makes even the parser's own errors JSON and
caps connections. ``routes`` is the table of every route. This package and
``node.app`` are the only ones that import ``aiohttp.web``.
"""
