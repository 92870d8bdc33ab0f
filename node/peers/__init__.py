"""Talking to other nodes: every peer call, and what keeps it safe.

``forwarder`` is the one door out (hop header, request id, breaker,
timeouts); ``client`` speaks the node-to-node protocol on top of it;
``breaker`` and ``singleflight`` are pure helpers; ``transfer`` is the bulk
format of entries that move; ``invalidation`` tells near caches a key changed.
"""
