"""Request mixes for the load benchmark: which requests, in what order, to which node.

A ``Workload`` is plain data, built once in Python and replayed by wrk
(``wrk.py`` with ``lua/mix.lua``, which reads ``write_files``' files): one
``Stream`` of requests per node, each sent in order and cycled; a request
names a method, a path and optionally one of ``Workload.bodies``, so a 100 KB
value is held once. ``key_sequence`` also drives the Python clients
(``pyload.py``), so both draw keys alike.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from client._batch import GET_PATH, encode_keys
from client._ring import HashRing
from client._transport import kv_path

from .bare_server import value_bytes as value_of

__all__ = [
    "POPULARITIES",
    "Request",
    "Stream",
    "Workload",
    "batch_workload",
    "hottest_key",
    "key_sequence",
    "kv_workload",
    "write_files",
]

POPULARITIES = ("uniform", "zipf")
ROUTINGS = ("owner", "entry")
NO_BODY = -1


@dataclass(frozen=True, slots=True)
class Request:
    """One request: ``body`` is an index into ``Workload.bodies``, -1 for none."""

    method: str
    path: str
    body: int = NO_BODY


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """The requests sent to one node, in order and cycled."""

    member: str  # "host:port": where the stream's connections connect, and their Host header
    requests: tuple[Request, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Streams of requests, the bodies they refer to, and what they are in words."""

    streams: tuple[Stream, ...]
    bodies: tuple[bytes, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("a workload needs at least one stream")
        for stream in self.streams:
            if not stream.requests:
                raise ValueError(f"the stream to {stream.member} has no requests")
            for request in stream.requests:
                if not NO_BODY <= request.body < len(self.bodies):
                    raise ValueError(f"request {request} refers to a missing body")


def key_sequence(
    key_count: int, length: int, *, popularity: str, seed: int, zipf_s: float = 0.99, draw: int = 0
) -> list[int]:
    """``length`` key indexes in ``range(key_count)``, drawn independently; the same
    arguments always give the same list. ``"uniform"``: every key equally likely.
    ``"zipf"``: popularity rank ``r`` (0-based) has weight ``1 / (r + 1) ** zipf_s``;
    ranks become keys through a permutation fixed by ``seed``, so the hot keys are
    spread over the ring instead of all being the first names. ``draw`` selects
    another independent sequence over the same permutation (one per entry node)."""
    if popularity not in POPULARITIES:
        raise ValueError(f"popularity must be one of {POPULARITIES}, got {popularity!r}")
    if key_count < 1 or length < 0:
        raise ValueError("need key_count >= 1 and length >= 0")
    rng = random.Random(f"key-draws-{seed}-{draw}")
    if popularity == "uniform":
        return [rng.randrange(key_count) for _ in range(length)]
    weights = itertools.accumulate(1.0 / (rank + 1) ** zipf_s for rank in range(key_count))
    ranks = rng.choices(range(key_count), cum_weights=list(weights), k=length)
    key_of_rank = _key_of_rank(key_count, seed)
    return [key_of_rank[rank] for rank in ranks]


def _key_of_rank(key_count: int, seed: int) -> list[int]:
    key_of_rank = list(range(key_count))
    random.Random(f"key-ranks-{seed}").shuffle(key_of_rank)
    return key_of_rank


def hottest_key(key_count: int, *, seed: int) -> int:
    """The index of the most popular key of ``key_sequence``'s Zipf draws."""
    return _key_of_rank(key_count, seed)[0]


def kv_workload(
    keys: Sequence[str],
    members: Sequence[str],
    *,
    get_fraction: float,
    popularity: str,
    value_bytes: int,
    routing: str,
    length: int = 20_000,
    seed: int = 1,
    zipf_s: float = 0.99,
) -> Workload:
    """GETs (``get_fraction`` of requests) and PUTs of ``value_bytes`` over ``keys``,
    every PUT carrying ``bodies[0]``. ``routing="owner"``: ``length * len(members)``
    requests are drawn and each goes to the stream of its key's owner
    (``HashRing(members)``, as the nodes place keys), so every stream holds about
    ``length`` requests and no node forwards. ``"entry"``: every member gets its own
    ``length`` requests drawn over all keys, so with 3 members about 2/3 of them are
    forwarded. ``ValueError`` on bad arguments or when a member would get no request."""
    _check_routing(routing, members)
    if not 0.0 <= get_fraction <= 1.0:
        raise ValueError(f"get_fraction must be in [0, 1], got {get_fraction}")
    if value_bytes < 0 or length < 1 or not keys:
        raise ValueError("need value_bytes >= 0, length >= 1 and at least one key")
    paths = [kv_path(key) for key in keys]
    # One Request object per distinct request: streams share them.
    gets = [Request("GET", path) for path in paths]
    puts = [Request("PUT", path, 0) for path in paths]

    def draw(count: int, index: int) -> tuple[list[int], list[Request]]:
        chosen = key_sequence(
            len(keys), count, popularity=popularity, seed=seed, zipf_s=zipf_s, draw=index
        )
        rng = random.Random(f"operations-{seed}-{index}")
        return chosen, [gets[key] if rng.random() < get_fraction else puts[key] for key in chosen]

    if routing == "owner":
        chosen, requests = draw(length * len(members), 0)
        owner_of_key = HashRing(members).owner_of_each(keys)
        by_member: dict[str, list[Request]] = {member: [] for member in members}
        for key, request in zip(chosen, requests, strict=True):
            by_member[owner_of_key[key]].append(request)
        for member, owned in by_member.items():
            if not owned:
                raise ValueError(f"{member} owns none of the requested keys: use more keys")
        streams = [
            Stream(member=member, requests=tuple(owned)) for member, owned in by_member.items()
        ]
    else:
        streams = [
            Stream(member=member, requests=tuple(draw(length, index)[1]))
            for index, member in enumerate(members)
        ]
    uses_puts = get_fraction < 1.0
    return Workload(
        streams=tuple(streams),
        bodies=(value_of(value_bytes),) if uses_puts else (),
        description=(
            f"{get_fraction:.0%} GET / {1 - get_fraction:.0%} PUT, {popularity}"
            f"{f' s={zipf_s:g}' if popularity == 'zipf' else ''} over {len(keys):,} keys, "
            f"{value_bytes:,} B values, {routing} routing to {len(members)} node(s)"
        ),
    )


def batch_workload(
    keys: Sequence[str],
    members: Sequence[str],
    *,
    batch_keys: int = 100,
    routing: str,
    bodies_count: int = 64,
    seed: int = 1,
) -> Workload:
    """``POST /batch/get`` of ``batch_keys`` distinct keys, chosen uniformly:
    ``routing="owner"`` gives each member ``bodies_count`` bodies of keys it owns
    only, so no node forwards; ``"entry"``, ``bodies_count`` bodies of keys from
    anywhere, which every stream sends in its own order. ``ValueError`` when a
    member owns fewer than ``batch_keys`` keys."""
    _check_routing(routing, members)
    if not 1 <= batch_keys <= len(keys) or bodies_count < 1:
        raise ValueError("need 1 <= batch_keys <= len(keys) and bodies_count >= 1")
    rng = random.Random(f"batches-{seed}")
    bodies: list[bytes] = []
    streams: list[Stream] = []
    if routing == "owner":
        owners = HashRing(members).owner_of_each(keys)
        for member in members:
            owned = [key for key, owner in zip(keys, owners, strict=True) if owner == member]
            if len(owned) < batch_keys:
                raise ValueError(f"{member} owns {len(owned)} keys, fewer than {batch_keys}")
            first = len(bodies)
            bodies.extend(encode_keys(rng.sample(owned, batch_keys)) for _ in range(bodies_count))
            requests = tuple(Request("POST", GET_PATH, first + i) for i in range(bodies_count))
            streams.append(Stream(member=member, requests=requests))
    else:
        bodies.extend(encode_keys(rng.sample(keys, batch_keys)) for _ in range(bodies_count))
        for member in members:
            order = list(range(bodies_count))
            rng.shuffle(order)
            requests = tuple(Request("POST", GET_PATH, index) for index in order)
            streams.append(Stream(member=member, requests=requests))
    return Workload(
        streams=tuple(streams),
        bodies=tuple(bodies),
        description=(
            f"POST {GET_PATH} of {batch_keys} uniform keys over {len(keys):,} keys, "
            f"{routing} routing to {len(members)} node(s)"
        ),
    )


def _check_routing(routing: str, members: Sequence[str]) -> None:
    if routing not in ROUTINGS:
        raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    if not members or len(set(members)) != len(members):
        raise ValueError("need at least one member, each listed once")


def write_files(workload: Workload, directory: Path) -> None:
    """Write stream ``i`` to ``stream-<i>`` (a line per request: ``METHOD PATH BODY``,
    ``BODY`` a body's index or -1) and body ``j`` to ``body-<j>`` in ``directory``
    (which must exist), as ``lua/mix.lua`` reads them."""
    for index, stream in enumerate(workload.streams):
        # Paths from kv_path are percent-encoded: never a space or a newline.
        lines = (f"{r.method} {r.path} {r.body}\n" for r in stream.requests)
        (directory / f"stream-{index}").write_text("".join(lines), encoding="ascii")
    for index, body in enumerate(workload.bodies):
        (directory / f"body-{index}").write_bytes(body)
