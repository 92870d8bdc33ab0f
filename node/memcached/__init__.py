"""The memcached door: memcached's text and meta protocol, served by the key service.

A second listener beside HTTP (``CACHE_MEMCACHED_PORT``, 11211 by default).
Any memcached client can use any node as one memcached server holding the
whole key space: the node forwards what it does not own, as mcrouter would.

    parser      bytes in, commands out (pure)
    commands    the commands, as values
    executor    a command -> calls of ``KeyService`` -> its reply (meta: mg ms md ma)
    hot         one whole get or set of owned keys: bytes in, reply out, in one pass
    replies     reply lines; core errors in memcached's words, in one place
    connection  one client: order, backpressure, authentication
    server      the listener: connection cap, idle timeout, delayed flush_all
    stats       the door's counters and memcached's ``stats``

The door imports the core and the parts below it, never ``node.http``.
"""

from .executor import DoorSettings
from .server import MemcachedServer, TokenCheck

__all__ = ["DoorSettings", "MemcachedServer", "TokenCheck"]
