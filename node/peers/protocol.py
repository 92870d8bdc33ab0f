"""The names of the node-to-node protocol: internal routes and headers.

Written once, here, for both sides: the peer client that sends them and the
HTTP door that answers them. Headers that clients see too (the hop, ring,
node and TTL headers) are in ``client._protocol``.
"""

from __future__ import annotations

__all__ = [
    "INVALIDATE_PATH",
    "LEAVE_PATH",
    "NEAR_COPY_OF_HEADER",
    "NEAR_TTL_HEADER",
    "REPLICAS_HEADER",
    "TRANSFER_PATH",
    "VIA_HEADER",
]

# A stopping node hands its entries over; a ring change pushes them to new owners.
TRANSFER_PATH = "/internal/transfer"
# "I am stopping: take me out of your ring now."
LEAVE_PATH = "/internal/leave"
# An owner tells the nodes holding near-cache copies that keys changed.
INVALIDATE_PATH = "/internal/invalidate"

# On a read sent to the owner: "I will serve your answer from my near cache
# for up to <s> seconds; tell me if the key changes" (node.peers.invalidation).
NEAR_TTL_HEADER = "X-Cache-Near-TTL"
# On an answer served from a near cache: the owner the copy came from.
NEAR_COPY_OF_HEADER = "X-Cache-Near-Copy-Of"
# On a forwarded answer: the node that forwarded it.
VIA_HEADER = "X-Cache-Via"
# On a write to a key with several owners: "<stored>/<owners>".
REPLICAS_HEADER = "X-Cache-Replicas"
