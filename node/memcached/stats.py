"""The memcached door's counters, and memcached's ``stats`` command made of them.

The door counts what memcached counts per command (gets, hits, sets...);
the store's counters (items, bytes, evictions) come from the core, the
forwarder's from the peer layer. ``stats`` shows a subset of memcached's
general statistics with memcached's names, so tools that read them
(memstat, dashboards) find them, plus a few of this node's own
(``forwards``...). Counters are this node's alone: any node answers for
the whole key space, but each counts its own work.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass, fields

from ..core import KeyService
from ..peers.forwarder import ForwardStats

__all__ = ["DoorStats", "render_stats", "stat_lines"]


@dataclass(slots=True)
class DoorStats:
    """Plain counters, memcached's names."""

    cmd_get: int = 0
    cmd_set: int = 0
    cmd_flush: int = 0
    cmd_touch: int = 0
    get_hits: int = 0
    get_misses: int = 0
    delete_hits: int = 0
    delete_misses: int = 0
    incr_hits: int = 0
    incr_misses: int = 0
    decr_hits: int = 0
    decr_misses: int = 0
    cas_hits: int = 0
    cas_misses: int = 0
    cas_badval: int = 0
    touch_hits: int = 0
    touch_misses: int = 0
    auth_cmds: int = 0
    auth_errors: int = 0
    idle_kicks: int = 0
    # Clients cut for reading none of their replies within the write timeout.
    write_timeouts: int = 0
    # Clients cut for leaving a command (a value, most often) unfinished for
    # the body timeout.
    body_timeouts: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    curr_connections: int = 0
    total_connections: int = 0
    rejected_connections: int = 0

    @property
    def commands(self) -> int:
        """Key commands served: reads (per key), writes, deletes, counters, touches."""
        return (
            self.cmd_get
            + self.cmd_set
            + self.cmd_touch
            + self.delete_hits
            + self.delete_misses
            + self.incr_hits
            + self.incr_misses
            + self.decr_hits
            + self.decr_misses
        )

    def reset(self) -> None:
        """memcached's ``stats reset``: counters to zero; the current connections stay."""
        current = self.curr_connections
        for spec in fields(self):
            setattr(self, spec.name, 0)
        self.curr_connections = current


def render_stats(
    stats: DoorStats,
    service: KeyService,
    forwarder: ForwardStats,
    *,
    started: float,
    version: str,
    max_connections: int,
) -> bytes:
    """The answer to ``stats``: ``STAT <name> <value>`` lines, then ``END``."""
    now = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    store = service.store.stats
    lines: dict[str, object] = {
        "pid": os.getpid(),
        "uptime": int(now - started),
        "time": int(now),
        "version": version,
        "pointer_size": 64,
        "rusage_user": f"{usage.ru_utime:.6f}",
        "rusage_system": f"{usage.ru_stime:.6f}",
        "max_connections": max_connections,
        **asdict(stats),
        "curr_items": store.items,
        "total_items": store.sets,
        "bytes": store.bytes,
        "evictions": store.evictions,
        "expired": store.expirations,
        # memcached's count of expired entries' memory taken for new ones;
        # here an expired entry's memory is freed when it is found expired.
        "reclaimed": store.expirations,
        "limit_maxbytes": service.store.max_bytes,
        "threads": 1,
        # This node's own: requests it sent to owners, and served for peers.
        "forwards": forwarder.forwards,
        "forward_errors": forwarder.forward_errors,
        "served_for_peers": service.stats.served_for_peers,
        "cluster_members": len(service.membership.ring),
    }
    return stat_lines(lines)


def stat_lines(lines: dict[str, object]) -> bytes:
    """``STAT <name> <value>`` lines, then ``END``."""
    body = b"".join(
        b"STAT %s %s\r\n" % (name.encode(), str(value).encode()) for name, value in lines.items()
    )
    return body + b"END\r\n"
