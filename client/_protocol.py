"""Header names of the node protocol that clients read or send.

The node imports these from here, so both sides name a header the same way.
"""

from __future__ import annotations

__all__ = ["NODE_HEADER", "PLACED_HEADER", "RING_HEADER", "TTL_HEADER"]

# On every answer: the version of the ring of the node that answered (a
# forwarded answer carries the owner's). A client whose view has another
# version re-reads /cluster.
RING_HEADER = "X-Cache-Ring"
# On a batch request: "<ring version>/<vnodes>" of the view the sender used
# to send every key of the batch to one of its owners. A node whose ring has
# that version and vnodes serves such a batch without looking up each key.
PLACED_HEADER = "X-Cache-Placed"
# Names the node whose store served the answer.
NODE_HEADER = "X-Cache-Node"
# Seconds to live: request header on a write, answer header on a hit.
TTL_HEADER = "X-Cache-TTL"
