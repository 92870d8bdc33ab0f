"""Bearer-token authentication between callers, nodes and peers.

When tokens are configured, every route except ``/check-alive`` wants
``Authorization: Bearer <token>``. Any of the configured tokens is accepted,
which is how a token is rotated without downtime: deploy with
``CACHE_AUTH_TOKEN=new,old``, move the clients to ``new``, then deploy with
``new`` alone. A node sends the first token to its peers.

Each comparison takes the same time whatever the input (``hmac.compare_digest``),
and every configured token is compared, so timing reveals nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TokenAuth", "load_tokens"]


class TokenAuth:
    """The accepted bearer tokens; the first is the one this node sends."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens if token)
        if not self._tokens:
            raise ValueError("TokenAuth needs at least one non-empty token")
        self.header_value = "Bearer " + self._tokens[0].decode()

    def __repr__(self) -> str:
        return f"TokenAuth({len(self._tokens)} tokens)"

    def accepts(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries one of the tokens."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        offered = authorization[len("Bearer ") :].strip().encode()
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
