"""Client library for the cache: ``CacheClient`` and ``AsyncCacheClient``.

    from client import CacheClient

    with CacheClient("http://10.0.3.17:7000") as cache:
        cache.set("greeting", b"hello", ttl=60)
        cache.get("greeting")            # b"hello"

The public API is exactly ``__all__``; the modules starting with ``_`` are
private. The placement rule (``HashRing``) is public so that tools can
compute where a key lives.
"""

from ._async_client import AsyncCacheClient
from ._cluster import ClusterView
from ._errors import (
    BadRequest,
    BatchError,
    CacheError,
    ClusterUnavailable,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    InvalidKey,
    PeerUnavailable,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    ValueTooLarge,
)
from ._options import ClientOptions
from ._ring import DEFAULT_VNODES, HashRing, key_position, ring_version, vnode_point
from ._sync_client import CacheClient

__all__ = [
    "DEFAULT_VNODES",
    "AsyncCacheClient",
    "BadRequest",
    "BatchError",
    "CacheClient",
    "CacheError",
    "ClientOptions",
    "ClusterUnavailable",
    "ClusterView",
    "ConnectError",
    "ConnectTimeout",
    "HTTPStatusError",
    "HashRing",
    "InvalidKey",
    "PeerUnavailable",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "ValueTooLarge",
    "key_position",
    "ring_version",
    "vnode_point",
]
