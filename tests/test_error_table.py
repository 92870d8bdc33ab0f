"""Every row of the README's error table, answered by real nodes over real sockets.

The table (README.md, "### Errors") is read here, and each of its
``(status, error)`` pairs must have a scenario below that makes a node
answer exactly that: the status, a JSON body ``{"error": word, "detail":
sentence}``, and the ``Retry-After`` or ``Allow`` header its row promises.
A row without a scenario fails, and so does a scenario for a word the table
does not list, so the table and the node cannot drift apart unnoticed. The
only rows left out are in ``NOT_PRODUCIBLE``, each with its reason; the rows
the node answers otherwise today are in ``ANSWERS_OTHERWISE`` (their
scenarios run, and are expected to fail until the node is fixed).

The scenarios share a few groups of nodes started once for the module, each
group with the small limits its scenarios need; a scenario that freezes a
node lets it go again before it returns.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from client import HashRing
from client._batch import encode_keys
from client._protocol import HOP_HEADER
from node.local_cluster import LocalCluster, NodeProcess

from .client_support import dead_member, forwarding, keys_where, wait_for
from .conftest import next_subnet
from .http_call import Answer, call
from .placement import key_owned_by
from .stand_in_peer import StandInPeer

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()

# -- the table


@dataclass(frozen=True, slots=True)
class Row:
    """One documented answer: a status and one of the error words of its row."""

    status: int
    word: str
    when: str

    @property
    def headers(self) -> dict[str, str | None]:
        """Headers the row promises: name (lower case) -> value, or None for any value."""
        promised: dict[str, str | None] = {}
        if "`Retry-After: 1`" in self.when:
            promised["retry-after"] = "1"
        if "`Allow`" in self.when:
            promised["allow"] = None
        return promised


def error_table(readme: str) -> list[Row]:
    """The rows of the table under "### Errors", one per error word."""
    start = readme.index("\n### Errors\n")
    end = re.compile(r"^#{1,3} ", re.MULTILINE).search(readme, start + 2)
    rows = []
    for line in readme[start : end.start() if end else None].splitlines():
        found = re.match(r"^\| (\d{3}) \| (`[^|]+`) \| (.+) \|$", line)
        if found:
            status, words, when = found.groups()
            rows += [Row(int(status), word, when) for word in re.findall(r"`(\w+)`", words)]
    return rows


ROWS = error_table(README)

# -- the nodes

CLIENT_TOKEN = "error-table-client"
PEER_TOKEN = "error-table-peer"
AUTH = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
AUTH_LINE = f"Authorization: Bearer {CLIENT_TOKEN}"
# Keeps a frozen node on every ring for the module's life (a suspicion takes
# 0.5 s x 100), and a woken one from taking its freeze for a long pause.
NOT_SUSPECTED = ["--health-failures", "100"]
# How long the versions scenario holds a write: past the 0.5 s after which an
# owner's newer version is taken for a later write, not for clock skew
# (node/core/writes.py, _SKEW_US).
HOLD_S = 0.6


@dataclass(frozen=True, slots=True)
class Nodes:
    """The module's groups of nodes, each named for what its scenarios test."""

    # One node, auth on, small limits, short head and body timeouts.
    edge: NodeProcess
    # One node with a small budget of bytes in flight and of connections per address.
    limits: NodeProcess
    # Three nodes, R=2, a short peer timeout and a breaker that opens after two.
    forwarding: LocalCluster
    # Two nodes, R=1, a peer timeout long enough to hold a write at a frozen owner.
    versions: LocalCluster
    # A node and a victim to kill, which also list ``stand_in``, a foreign peer.
    foreign: LocalCluster
    stand_in: StandInPeer
    # Two nodes; the first is stopped while its only peer is frozen.
    draining: LocalCluster
    # A node that lists a member that never answers: it stays starting.
    starting: NodeProcess


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    log_dir = str(tmp_path_factory.mktemp("error-table"))

    def cluster(count: int, *args: str, subnet: str | None = None) -> LocalCluster:
        return LocalCluster.on_loopback(
            count, subnet=subnet or next_subnet(), memcached_port=0, args=args, log_dir=log_dir
        )

    foreign_subnet = next_subnet()
    foreign_peers = ",".join(f"{foreign_subnet}.{n}:7000" for n in (1, 2, 9))
    starting_subnet = next_subnet()
    ready = [
        edge := cluster(
            1,
            *("--auth-token", CLIENT_TOKEN, "--peer-token", PEER_TOKEN),
            *("--max-key-bytes", "32", "--max-value-bytes", "1KiB"),
            *("--head-timeout", "0.5", "--body-timeout", "0.5"),
        ),
        limits := cluster(1, "--max-inflight-bytes", "1MiB", "--max-connections-per-address", "8"),
        forwarding := cluster(
            3,
            *("--replicas", "2", "--peer-timeout", "0.5"),
            *("--breaker-failures", "2", "--breaker-cooldown", "5"),
            *NOT_SUSPECTED,
        ),
        versions := cluster(2, "--peer-timeout", "10", *NOT_SUSPECTED),
        foreign := cluster(2, "--peers", foreign_peers, *NOT_SUSPECTED, subnet=foreign_subnet),
        draining := cluster(2, *NOT_SUSPECTED),
    ]
    # Its other member never answers: it waits for it 200 s (four suspicion
    # timeouts) before it serves.
    starting_peers = f"{starting_subnet}.1:7000,{dead_member(starting_subnet)}"
    starting = cluster(1, "--peers", starting_peers, *NOT_SUSPECTED, subnet=starting_subnet)
    # Started and stopped all at once: in the time of the slowest, not of the sum.
    everyone = LocalCluster([node for group in (*ready, starting) for node in group.nodes])
    with StandInPeer(f"{foreign_subnet}.9") as stand_in:
        try:
            for node in everyone.nodes:
                node.start()
            for group in ready:
                for node in group.nodes:
                    node.wait_alive(30)
            yield Nodes(
                edge=edge.nodes[0],
                limits=limits.nodes[0],
                forwarding=forwarding,
                versions=versions,
                foreign=foreign,
                stand_in=stand_in,
                draining=draining,
                starting=starting.nodes[0],
            )
        finally:
            everyone.stop()


# -- talking to them


def exchange(member: str, data: bytes, *, source: str | None = None) -> Answer:
    """Send ``data`` as is on a new connection (from ``source``, when given)
    and read the one answer, by its ``Content-Length`` as a client does."""
    host, port = member.rsplit(":", 1)
    address = (source, 0) if source else None
    with socket.create_connection((host, int(port)), 10, address) as sock:
        with contextlib.suppress(ConnectionError):  # it may answer before reading it all
            sock.sendall(data)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> Answer:
    """The next answer on ``sock``, within its timeout."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()
    finally:
        response.close()
    names = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, names, body)


def head(method: str, target: str, *lines: str, version: str = "HTTP/1.1") -> bytes:
    """A request head with ``lines`` as its headers (after ``Host``)."""
    return "\r\n".join([f"{method} {target} {version}", "Host: cache", *lines, "", ""]).encode()


def key_with_owners(cluster: LocalCluster, *owners: NodeProcess, prefix: str) -> str:
    """A key whose two owners (R=2) are ``owners``."""
    ring = HashRing(cluster.members)
    wanted = {owner.member for owner in owners}
    return keys_where(lambda key: set(ring.owners(key, 2)) == wanted, 1, prefix=prefix)[0]


@contextlib.contextmanager
def frozen(*processes: NodeProcess) -> Iterator[None]:
    """``processes`` stopped with SIGSTOP for the block, woken however it ends."""
    for process in processes:
        process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.signal(signal.SIGCONT)


# -- the scenarios: one per (status, error), registered by ``scenario``

Scenario = Callable[[Nodes], Answer]
SCENARIOS: dict[tuple[int, str], Scenario] = {}


def scenario(status: int, word: str) -> Callable[[Scenario], Scenario]:
    def register(produce: Scenario) -> Scenario:
        assert (status, word) not in SCENARIOS, f"two scenarios for {status} {word}"
        SCENARIOS[status, word] = produce
        return produce

    return register


# Rows no request can honestly produce, and why. Every other row needs a scenario.
NOT_PRODUCIBLE = {
    (500, "internal"): (
        "the answer to a bug in the node itself (its traceback goes to the log): no request "
        "is meant to cause one, so producing it would take planting a bug in the node's code"
    ),
}

# Rows whose scenario runs but the node answers otherwise today (a product
# bug, reported): strict, so the case fails once the node answers as documented.
ANSWERS_OTHERWISE: dict[tuple[int, str], str] = {}


# 400


@scenario(400, "bad_key")
def _key_not_valid_percent_encoded_utf8(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "GET", "/kv/%FF", headers=AUTH)


@scenario(400, "bad_ttl")
def _ttl_not_a_number(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "PUT", "/kv/ttl?ttl=soon", b"v", headers=AUTH)


@scenario(400, "bad_request")
def _header_line_without_a_colon(nodes: Nodes) -> Answer:
    return exchange(nodes.edge.member, head("GET", "/kv/a", "this is no header"))


@scenario(400, "bad_batch")
def _batch_header_not_json(nodes: Nodes) -> Answer:
    body = (3).to_bytes(4, "big") + b"abc"
    return call(nodes.edge.member, "POST", "/batch/get", body, headers=AUTH)


# 401, 403, 404, 405


@scenario(401, "unauthorized")
def _no_token(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "GET", "/kv/a")


@scenario(403, "not_a_peer")
def _internal_route_with_a_client_token(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "POST", "/internal/gossip", b"{}", headers=AUTH)


@scenario(404, "not_found")
def _a_miss(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "GET", "/kv/never-written", headers=AUTH)


@scenario(405, "method_not_allowed")
def _patch_a_key(nodes: Nodes) -> Answer:
    answer = call(nodes.edge.member, "PATCH", "/kv/a", b"v", headers=AUTH)
    assert "PUT" in answer.headers.get("allow", ""), answer.headers
    return answer


# 408


@scenario(408, "head_timeout")
def _head_never_finished(nodes: Nodes) -> Answer:
    return exchange(nodes.edge.member, b"GET /kv/a HTTP/1.1\r\nHost: cache\r\n")


@scenario(408, "body_timeout")
def _body_never_finished(nodes: Nodes) -> Answer:
    request = head("PUT", "/kv/slow", AUTH_LINE, "Content-Length: 10") + b"ab"
    return exchange(nodes.edge.member, request)


# 409


@scenario(409, "stale_version")
def _write_held_up_past_a_later_one(nodes: Nodes) -> Answer:
    # A write is held up for longer than 0.5 s between its stamp and its
    # owner, and a later write reaches the owner first: the held one must not
    # undo it. The hold is a frozen owner: the writer stamps the held write
    # and sends it; the later write is sent straight to the owner, on a
    # connection it already accepted, before the held one arrives; the owner
    # wakes after the hold, reads the later write first (the bytes that came
    # first) and stamps it then, more than 0.5 s after the held write began.
    cluster = nodes.versions
    writer, owner = cluster.nodes
    # A key the owner writes to itself alone, at once (keys not moving):
    # otherwise the later write would wait for other members too.
    cluster.wait_settled()
    key = key_owned_by(cluster.members, owner.member, prefix="held")
    direct = http.client.HTTPConnection(owner.host, owner.port, timeout=20)
    try:
        direct.request("GET", "/check-alive")
        direct.getresponse().read()
        before = forwarding(writer.member)["forwards"]
        with ThreadPoolExecutor(1) as pool, frozen(owner):
            direct.request("PUT", f"/kv/{key}", body=b"later")
            held = pool.submit(call, writer.member, "PUT", f"/kv/{key}", b"held", timeout=20)
            # Counted once stamped, as it is sent: the write has begun by now.
            wait_for(
                lambda: forwarding(writer.member)["forwards"] > before,
                within=10,
                what="the held write's forward",
            )
            began_by = time.time()
            time.sleep(max(0.0, began_by + HOLD_S - time.time()))  # the hold itself
        later = direct.getresponse()
        assert later.status == 204, later.read()
        answer = held.result(timeout=30)
    finally:
        direct.close()
    assert call(owner.member, "GET", f"/kv/{key}").body == b"later"
    return answer


# 413, 414


@scenario(413, "too_large")
def _value_over_the_limit(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "PUT", "/kv/big", b"v" * 2048, headers=AUTH)


@scenario(413, "batch_too_large")
def _batch_declared_over_16_mib(nodes: Nodes) -> Answer:
    length = f"Content-Length: {17 * 1024 * 1024}"
    return exchange(nodes.edge.member, head("POST", "/batch/set", AUTH_LINE, length))


@scenario(413, "too_many_keys")
def _batch_of_10001_keys(nodes: Nodes) -> Answer:
    body = encode_keys([f"k{n}" for n in range(10_001)])
    return call(nodes.edge.member, "POST", "/batch/get", body, headers=AUTH)


@scenario(414, "key_too_long")
def _key_over_the_limit(nodes: Nodes) -> Answer:
    return call(nodes.edge.member, "GET", "/kv/" + "k" * 33, headers=AUTH)


@scenario(414, "line_too_long")
def _request_line_over_8190_bytes(nodes: Nodes) -> Answer:
    return exchange(nodes.edge.member, head("GET", "/kv/" + "k" * 9_000, AUTH_LINE))


# 415, 417, 421, 431


@scenario(415, "unsupported_encoding")
def _gzip_body(nodes: Nodes) -> Answer:
    headers = {**AUTH, "Content-Encoding": "gzip"}
    return call(nodes.edge.member, "PUT", "/kv/zipped", b"v", headers=headers)


@scenario(417, "expectation_failed")
def _unknown_expectation(nodes: Nodes) -> Answer:
    headers = {**AUTH, "Expect": "a-miracle"}
    return call(nodes.edge.member, "PUT", "/kv/hoping", b"v", headers=headers)


@scenario(421, "not_owner")
def _peer_read_at_a_node_that_does_not_own_the_key(nodes: Nodes) -> Answer:
    a, b, o = nodes.forwarding.nodes
    key = key_with_owners(nodes.forwarding, b, o, prefix="elsewhere")
    return call(a.member, "GET", f"/kv/{key}", headers={HOP_HEADER: b.member})


@scenario(431, "headers_too_large")
def _header_over_8190_bytes(nodes: Nodes) -> Answer:
    return exchange(nodes.edge.member, head("GET", "/kv/a", AUTH_LINE, "X-Big: " + "a" * 9_000))


# 502


@scenario(502, "peer_unreachable")
def _owner_killed(nodes: Nodes) -> Answer:
    node, victim = nodes.foreign.nodes
    key = key_owned_by([*nodes.foreign.members, nodes.stand_in.member], victim.member)
    victim.kill()
    return call(node.member, "PUT", f"/kv/{key}", b"v")


@scenario(502, "peer_failed")
def _owner_answers_an_html_error_page(nodes: Nodes) -> Answer:
    node = nodes.foreign.nodes[0]
    stand_in = nodes.stand_in.member
    key = key_owned_by([*nodes.foreign.members, stand_in], stand_in, prefix="foreign")
    answer = call(node.member, "PUT", f"/kv/{key}", b"v")
    assert ("PUT", f"/kv/{key}") in nodes.stand_in.requests, "the owner was never asked"
    return answer


# 503


@scenario(503, "starting")
def _node_whose_peer_never_answered(nodes: Nodes) -> Answer:
    node = nodes.starting

    def answers() -> bool:
        with contextlib.suppress(OSError):
            return call(node.member, "GET", "/check-alive", timeout=1).status > 0
        return False

    wait_for(answers, within=30, what="the starting node's first answer")
    return call(node.member, "GET", "/kv/early")


@scenario(503, "draining")
def _write_to_a_stopping_node(nodes: Nodes) -> Answer:
    cluster = nodes.draining
    stopping, peer = cluster.nodes
    # Its own keys, written at once (a forward to the frozen peer would time out).
    key = key_owned_by(cluster.members, stopping.member, prefix="draining")
    assert call(stopping.member, "PUT", f"/kv/{key}", b"to hand off").status == 204
    # The drain hands that entry to the peer, frozen: it cannot finish.
    with frozen(peer):
        stopping.signal(signal.SIGTERM)
        answers: list[Answer] = []

        def refused() -> bool:
            answers.append(call(stopping.member, "PUT", f"/kv/{key}", b"v"))
            return answers[-1].status != 204

        wait_for(refused, within=10, what="a refused write")
    return answers[-1]


@scenario(503, "busy")
def _body_over_what_is_left_of_the_budget(nodes: Nodes) -> Answer:
    node = nodes.limits
    held = 900 * 1024  # of the 1 MiB of bodies in flight allowed
    source = node.host.rsplit(".", 1)[0] + ".60"  # not the address of the test's other calls
    host, port = node.member.rsplit(":", 1)
    with socket.create_connection((host, int(port)), 10, (source, 0)) as unfinished:
        unfinished.sendall(head("PUT", "/kv/unfinished", f"Content-Length: {held}") + b"v")

        def reserved() -> bool:
            used: int = call(node.member, "GET", "/stats").json()["inflight_bytes"]
            return used >= held

        wait_for(reserved, within=10, what="the unfinished body's reservation")
        answer = call(node.member, "PUT", "/kv/another", b"v" * 200 * 1024)
        # The body that held the budget is still taken when it is finished.
        unfinished.sendall(b"v" * (held - 1))
        assert read_answer(unfinished).status == 204
    return answer


@scenario(503, "too_many_connections")
def _one_connection_over_the_per_address_limit(nodes: Nodes) -> Answer:
    node = nodes.limits
    source = node.host.rsplit(".", 1)[0] + ".50"  # its own count: no other call uses it
    host, port = node.member.rsplit(":", 1)
    with contextlib.ExitStack() as stack:
        for _ in range(8):
            stack.enter_context(socket.create_connection((host, int(port)), 10, (source, 0)))
        return exchange(node.member, b"", source=source)


@scenario(503, "peer_circuit_open")
def _owner_that_keeps_timing_out(nodes: Nodes) -> Answer:
    _, b, o = nodes.forwarding.nodes
    key = key_with_owners(nodes.forwarding, b, o, prefix="breaker")
    answers: list[Answer] = []
    with frozen(o):
        for _ in range(6):  # the breaker opens after 2 failures in a row
            answers.append(call(b.member, "PUT", f"/kv/{key}", b"v"))
            if answers[-1].status != 504:
                break
    for earlier in answers[:-1]:
        assert earlier.json()["error"] == "peer_timeout", earlier.body
    assert len(answers) > 2, [answer.body for answer in answers]
    return answers[-1]


@scenario(503, "owners_unavailable")
def _replicated_write_with_both_owners_frozen(nodes: Nodes) -> Answer:
    a, b, o = nodes.forwarding.nodes
    key = key_with_owners(nodes.forwarding, b, o, prefix="orphan")
    with frozen(b, o):
        return call(a.member, "PUT", f"/kv/{key}", b"v")


# 504, 505


@scenario(504, "peer_timeout")
def _replicated_write_with_a_frozen_owner(nodes: Nodes) -> Answer:
    a, _, o = nodes.forwarding.nodes
    key = key_with_owners(nodes.forwarding, a, o, prefix="slow")
    with frozen(o):
        return call(a.member, "PUT", f"/kv/{key}", b"v")


@scenario(505, "http_version_not_supported")
def _http_2_request_line(nodes: Nodes) -> Answer:
    return exchange(nodes.edge.member, head("GET", "/check-alive", version="HTTP/2.0"))


# -- the tests


def test_every_row_of_the_error_table_has_a_scenario_and_every_scenario_a_row() -> None:
    assert len(ROWS) > 20, "the README's error table was not found or not read"
    documented = {(row.status, row.word) for row in ROWS}
    assert documented - SCENARIOS.keys() - NOT_PRODUCIBLE.keys() == set(), "rows with no scenario"
    assert SCENARIOS.keys() - documented == set(), "scenarios for answers the README does not list"
    assert NOT_PRODUCIBLE.keys() <= documented - SCENARIOS.keys()
    assert ANSWERS_OTHERWISE.keys() <= SCENARIOS.keys()


def _case(row: Row) -> object:
    reason = ANSWERS_OTHERWISE.get((row.status, row.word))
    marks = [pytest.mark.xfail(strict=True, reason=reason, raises=AssertionError)] if reason else []
    return pytest.param(row, marks=marks, id=f"{row.status}-{row.word}")


@pytest.mark.parametrize("row", [_case(row) for row in ROWS])
def test_a_node_gives_each_documented_error(nodes: Nodes, row: Row) -> None:
    reason = NOT_PRODUCIBLE.get((row.status, row.word))
    if reason is not None:
        pytest.skip(f"not producible by design: {reason}")
    produce = SCENARIOS.get((row.status, row.word))
    assert produce is not None, f"no scenario produces {row.status} {row.word}: add one"
    answer = produce(nodes)
    summary = f"{answer.status} {answer.headers} {answer.body[:300]!r}"
    assert (answer.status, answer.headers.get("content-type")) == (
        row.status,
        "application/json",
    ), summary
    try:
        body = answer.json()
    except ValueError:
        raise AssertionError(f"the body is not JSON: {summary}") from None
    assert set(body) == {"error", "detail"}, summary
    assert body["error"] == row.word, summary
    assert isinstance(body["detail"], str) and body["detail"], summary
    for name, value in row.headers.items():
        assert name in answer.headers, f"no {name} header: {summary}"
        assert value is None or answer.headers[name] == value, summary
