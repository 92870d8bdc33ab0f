"""A tiny HTTP helper that sends paths exactly as given (no re-encoding)."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["OWN_COPY", "Answer", "call"]

# Headers that ask a node for its own copy of a key, as a peer reading while
# keys move does: no forward, and an answer whether it owns the key or not.
OWN_COPY = {"X-Cache-Hop": "test", "X-Cache-Local": "1"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def served_by(self) -> str | None:
        return self.headers.get("x-cache-node")


def call(
    member: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One HTTP request with the path sent exactly as given (no re-encoding)."""
    host, port = member.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        payload = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, names, payload)
    finally:
        connection.close()
