"""Tokens: clients prove they may use the cache, nodes that they are peers.

When client tokens are configured (``CACHE_AUTH_TOKEN``), every route
except ``/check-alive`` and ``/openapi.json`` wants ``Authorization: Bearer
<token>``. Peer tokens (``CACHE_PEER_TOKEN``) are a second set: a request
with ``Authorization: Peer <token>`` comes from a node of the cluster, and
only such requests may use the internal routes and headers (the hop header,
versions, gossip, transfers). Any token of a set is accepted, which is how
a token is rotated without downtime: deploy ``new,old``, move the senders to
``new``, then deploy ``new`` alone. A node sends the first of each set.

Each comparison takes the same time whatever the input (``hmac.compare_digest``),
and every configured token is compared, so timing reveals nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TokenAuth", "load_tokens"]


class TokenAuth:
    """The accepted tokens of one scheme (``Bearer`` for clients, ``Peer`` for
    nodes); the first is the one this node sends."""

    def __init__(self, tokens: Iterable[str], *, scheme: str = "Bearer") -> None:
        self._tokens = tuple(token.encode() for token in tokens if token)
        if not self._tokens:
            raise ValueError("TokenAuth needs at least one non-empty token")
        self._prefix = scheme + " "
        self.header_value = self._prefix + self._tokens[0].decode()

    def __repr__(self) -> str:
        return f"TokenAuth({self._prefix.strip()}, {len(self._tokens)} tokens)"

    def accepts(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries one of the tokens."""
        if not authorization or not authorization.startswith(self._prefix):
            return False
        # A header is str, decoded by the server as it could: bytes that are
        # not valid text must not make the comparison fail loudly.
        offered = authorization[len(self._prefix) :].strip().encode("utf-8", "surrogateescape")
        matched = False
        for token in self._tokens:  # no early exit: every token costs the same
            matched |= hmac.compare_digest(offered, token)
        return matched


def load_tokens(tokens: Iterable[str], token_file: str) -> TokenAuth | None:
    """The tokens from configuration plus those in ``token_file`` (one per line,
    ``#`` comments allowed), or None when there are none (auth off).

    Raises ``OSError`` when the file cannot be read.
    """
    collected = [token.strip() for token in tokens if token.strip()]
    if token_file:
        for line in Path(token_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                collected.append(line)
    return TokenAuth(collected) if collected else None
