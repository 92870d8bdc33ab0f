"""The names of the node-to-node protocol: internal routes and headers.

Written once, here, for both sides: the peer client that sends them and the
HTTP door that answers them. Headers that clients see too (the hop, ring,
node and TTL headers) are in ``client._protocol``.
"""

from __future__ import annotations

__all__ = [
    "CAS_HEADER",
    "DELTA_HEADER",
    "FLAGS_HEADER",
    "FLUSH_PATH",
    "GOSSIP_PATH",
    "INVALIDATE_PATH",
    "ITEMS_HEADER",
    "LOCAL_HEADER",
    "MUTATE_PREFIX",
    "NEAR_COPY_OF_HEADER",
    "NEAR_TRACKED_HEADER",
    "NEAR_TTL_HEADER",
    "OP_HEADER",
    "PREVIOUS_HEADER",
    "REPLICAS_HEADER",
    "TRANSFER_PATH",
    "VERSION_HEADER",
    "VIA_HEADER",
]

# A stopping node hands its entries over; a ring change pushes them to new owners.
TRANSFER_PATH = "/internal/transfer"
# An owner tells the nodes holding near-cache copies that keys changed.
INVALIDATE_PATH = "/internal/invalidate"
# Members exchange what they know of the cluster (node.cluster.gossip).
GOSSIP_PATH = "/internal/gossip"
# A conditional write (add, cas, incr...) decided at the key's primary owner:
# POST /internal/mutate/<key as in /kv/>, the value as the body.
MUTATE_PREFIX = "/internal/mutate/"
# memcached's flush_all: forget every entry older than the version the
# sender stamped (X-Cache-Version). Answered 204.
FLUSH_PATH = "/internal/flush"

# On a write between nodes: the version the writer stamped; on a read's
# answer: the version of the entry (or of the deletion, on a 404).
VERSION_HEADER = "X-Cache-Version"
# memcached's client flags of an entry, when not 0.
FLAGS_HEADER = "X-Cache-Flags"
# On a mutate: the operation, the version a cas expects, an incr's delta.
OP_HEADER = "X-Cache-Op"
CAS_HEADER = "X-Cache-Cas"
DELTA_HEADER = "X-Cache-Delta"
# On a peer's POST /batch/get: "give each hit's flags and version too" (a
# memcached multi-get): the answer's frame header then carries "flags" and
# "versions", one number per key (0 for a key that is not a hit).
ITEMS_HEADER = "X-Cache-Items"
# On a read between nodes: "answer with your own copy, owner or not" (a
# previous owner asked while entries move; node.core.placement).
LOCAL_HEADER = "X-Cache-Local"
# On a write between nodes: "you owned this key under an earlier ring; the
# current owners get this write too" (keys still moving; node.core.writes).
PREVIOUS_HEADER = "X-Cache-Previous"

# On a read sent to the owner: "I will serve your answer from my near cache
# for up to <s> seconds; tell me if the key changes" (node.peers.invalidation).
NEAR_TTL_HEADER = "X-Cache-Near-TTL"
# On the owner's answer to such a read: "I will tell you": the copy may be kept.
NEAR_TRACKED_HEADER = "X-Cache-Near-Tracked"
# On an answer served from a near cache: the owner the copy came from.
NEAR_COPY_OF_HEADER = "X-Cache-Near-Copy-Of"
# On a forwarded answer: the node that forwarded it.
VIA_HEADER = "X-Cache-Via"
# On a write to a key with several owners: "<stored>/<owners>".
REPLICAS_HEADER = "X-Cache-Replicas"
