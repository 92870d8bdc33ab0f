"""What every route of a node works with, in one value."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config
from .forwarder import Forwarder
from .guard import RouteGuard
from .hot_keys import HotKeys
from .invalidation import Invalidations
from .membership import Membership
from .store import Store

__all__ = ["Lifecycle", "NodeContext"]


@dataclass(slots=True)
class Lifecycle:
    """Where the node is in its life. ``draining``: stopping, refusing writes."""

    draining: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeContext:
    """The parts of one node: its settings, store, ring and link to its peers.

    ``hot_keys`` is the read path for keys owned elsewhere (coalescing, near
    cache); ``invalidations`` tells peers that mirror a key owned here that
    it changed.
    """

    config: Config
    store: Store
    membership: Membership
    forwarder: Forwarder
    guard: RouteGuard
    hot_keys: HotKeys
    invalidations: Invalidations
    lifecycle: Lifecycle = field(default_factory=Lifecycle)

    @property
    def self_id(self) -> str:
        return self.membership.self_id
