"""ElastiCache Auto Discovery on the memcached port: ``config get cluster``.

ElastiCache-aware memcached clients (AWS's cluster clients for Java, PHP and
.NET, django-elasticache and other discovery wrappers) are given one
endpoint and ask it for every node: ``config get cluster``, or ``get
AmazonElastiCache:cluster`` before engine 1.4.14. The answer, as AWS's
page "Adding Auto Discovery to your client library" gives it:

    CONFIG cluster 0 <bytes>\\r\\n
    <version>\\n
    <host>|<ip>|<port> <host>|<ip>|<port> ...\\n
    \\r\\n
    END\\r\\n

``<bytes>`` counts the two lines between (their LFs included). A client
keeps the configuration with the highest version it has seen, so the
version is the cluster's, not one node's: the membership keeper's
``config_version``, raised by every ring change and gossiped, the highest
heard winning (``node.cluster.keeper``). Every member is listed by its
address (nodes have no DNS names of their own) with this node's memcached
port, the same on every task of a service.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["cluster_config"]


def cluster_config(version: int, members: Iterable[str], port: int, *, legacy: bool) -> bytes:
    """The answer to ``config get cluster`` (``legacy``: to ``get
    AmazonElastiCache:cluster``, the same payload as a value) for ``members``
    (``host:port`` of their HTTP door)."""
    hosts = sorted(member.rpartition(":")[0].strip("[]") for member in members)
    nodes = " ".join(f"{host}|{host}|{port}" for host in hosts)
    payload = f"{version}\n{nodes}\n".encode()
    if legacy:
        return b"VALUE AmazonElastiCache:cluster 0 %d\r\n%b\r\nEND\r\n" % (len(payload), payload)
    return b"CONFIG cluster 0 %d\r\n%b\r\nEND\r\n" % (len(payload), payload)
