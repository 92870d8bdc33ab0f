"""Client library for the cache: the placement rule, a pooled transport, errors.

The public API is exactly ``__all__``.
"""

from ._errors import (
    BadRequest,
    CacheError,
    ClusterUnavailable,
    ConnectError,
    InvalidKey,
    PeerUnavailable,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    ValueTooLarge,
)
from ._ring import DEFAULT_VNODES, HashRing, key_position, ring_version, vnode_point

__all__ = [
    "DEFAULT_VNODES",
    "BadRequest",
    "CacheError",
    "ClusterUnavailable",
    "ConnectError",
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
