"""The core of a node: the key service, protocol-free.

``KeyService`` answers "get / set / delete these keys" with plain values
(``node.results``) and ``node.errors``; the doors (``node.http``,
``node.memcached``) only translate. ``placement`` says who owns a key;
``remote_reads`` is the read path for keys owned elsewhere (coalescing, the
near cache); ``peer_calls`` is what the core asks of the other members;
``replication`` holds the rules for keys with several owners; ``moves``
keeps entries with their owners when the ring changes.
"""

from .limits import Limits, check_key, check_value_size
from .moves import EntryMover, MoveReport, TransferStats
from .mutations import Mutation, Op, Outcome
from .peer_calls import NoPeers, PeerCalls
from .placement import Placement
from .remote_reads import RemoteReads
from .service import KeyService, Lifecycle, Local
from .versions import VersionClock

__all__ = [
    "EntryMover",
    "KeyService",
    "Lifecycle",
    "Limits",
    "Local",
    "MoveReport",
    "Mutation",
    "NoPeers",
    "Op",
    "Outcome",
    "PeerCalls",
    "Placement",
    "RemoteReads",
    "TransferStats",
    "VersionClock",
    "check_key",
    "check_value_size",
]
