"""Every row of the README's configuration table, set in the environment of real nodes.

The table (README.md, "## Configuration") is read here, and each of its rows
must have a check below: nodes started with that variable in their
environment (as an ECS task definition sets it, not as a flag), and the
setting's documented effect seen from outside them: HTTP answers,
``/cluster``, ``/stats``, ``/metrics``, log lines, the memcached port, what
becomes of a connection. A row without a check fails, and so does a check for
a variable the table does not list. Every value set differs from the default
in a way its check tells apart, so each check fails if the node ignored its
variable. The README's old names of the near-cache settings and a flag
beating its variable are checked last (a bad value's one-line error and exit
status 2 are tests/test_config.py's).

The nodes start once for the module, all at the same time, in a few groups
that each carry many settings (``Lab``). Most checks are one cheap look at a
group; the few that need a scene played out (an owner frozen, a member gone
silent, connections left alone) play it once and keep what they saw. No row
is exempt: each setting has an effect that a few seconds show.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from client import HashRing
from client._batch import GET_PATH, encode_keys
from node.config import SETTINGS
from node.local_cluster import NodeProcess

from .aws_emulator import AwsEmulator
from .client_support import wait_for
from .emf_shape import check_emf
from .http_call import Answer, call
from .settings_lab import (
    AUTH,
    AUTH_LINE,
    BIG_ANSWER,
    BOTH_NAMES,
    CLIENT_TOKENS,
    CLOUDWATCH_INTERVAL,
    CLOUDWATCH_NAMESPACE,
    ECS_CLUSTER,
    ECS_SERVICE,
    ECS_ZONE,
    FILE_TOKEN,
    GUARDED_ENV_PORT,
    LONELY_HEALTH,
    METADATA_ZONE,
    NEAR_CACHE_TTL,
    OLD_NAMES_ALONE,
    PAIR_PEER_TIMEOUT,
    PEER_TOKEN,
    SCENE_LIMIT,
    SOLO_MAX_BYTES,
    SOLO_MAX_CONNECTIONS,
    SOLO_MAX_KEY,
    SOLO_MAX_VALUE,
    SOLO_MEMCACHED_PORT,
    SOLO_PER_ADDRESS,
    SOLO_PORT,
    TRIO_REPLICAS,
    TRIO_VNODES,
    VALUE_LIMIT,
    Lab,
    answer_on,
    connections_from,
    established,
    key_away_from,
    log_of,
    memcached,
    near,
    near_setting,
    on_block_of,
    open_lab,
    put_at_owner,
    refused,
    stats,
)

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def configuration_rows(readme: str) -> list[tuple[str, ...]]:
    """The variables of each row of the table under "## Configuration" (a row
    names a second one when that is read if the first is unset)."""
    start = readme.index("\n## Configuration\n")
    end = readme.index("\n## ", start + 1)
    return [
        tuple(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
        for line in readme[start:end].splitlines()
        if line.startswith("| `")
    ]


ROWS = configuration_rows(README)
VARIABLES = [row[0] for row in ROWS]
# The near cache was the hot cache: the old names (HOT for NEAR) still work.
RENAMED = [(name.replace("_NEAR_", "_HOT_"), name) for name in VARIABLES if "_NEAR_CACHE" in name]
PARSE = {setting.env: setting.parse for setting in SETTINGS}


@pytest.fixture(scope="module")
def lab(aws: AwsEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with open_lab(aws, tmp_path_factory.mktemp("settings")) as started:
        yield started


# -- the checks, one per row of the table

Check = Callable[[Lab], None]
CHECKS: dict[str, Check] = {}


def checks(variable: str) -> Callable[[Check], Check]:
    """Register the decorated function as the check of ``variable``'s row."""

    def register(check: Check) -> Check:
        assert variable not in CHECKS, f"two checks for {variable}"
        CHECKS[variable] = check
        return check

    return register


@checks("CACHE_HOST")
def listens_on_its_host_alone(lab: Lab) -> None:
    assert call(lab.solo.member, "GET", "/check-alive").status == 200
    assert refused(on_block_of(lab.solo.host, 2), SOLO_PORT)


@checks("CACHE_PORT")
def listens_on_its_port(lab: Lab) -> None:
    assert call(f"{lab.solo.host}:{SOLO_PORT}", "GET", "/check-alive").status == 200
    assert refused(lab.solo.host, 7000)


@checks("CACHE_MEMCACHED_PORT")
def speaks_memcached_on_its_port(lab: Lab) -> None:
    [version] = memcached(lab.solo.host, SOLO_MEMCACHED_PORT, b"version\r\n")
    assert version.startswith(b"VERSION "), version
    assert refused(lab.solo.host, 11211)


@checks("CACHE_MEMCACHED_FLUSH_ALL")
def refuses_memcached_flush_all(lab: Lab) -> None:
    stored, flushed, kept = memcached(
        lab.solo.host,
        SOLO_MEMCACHED_PORT,
        b"set flush-probe 0 0 4\r\nkept\r\n",
        b"flush_all\r\n",
        b"get flush-probe\r\n",
    )
    assert (stored, flushed) == (b"STORED\r\n", b"CLIENT_ERROR flush_all not allowed\r\n")
    assert kept.startswith(b"VALUE flush-probe"), kept


@checks("CACHE_ADVERTISE")
def is_known_by_its_advertised_id(lab: Lab) -> None:
    advertised = f"{on_block_of(lab.solo.host, 99)}:{SOLO_PORT}"
    answer = call(lab.solo.member, "GET", "/cluster")
    assert (answer.json()["node"], answer.json()["members"]) == (advertised, [advertised])
    assert answer.served_by == advertised


@checks("CACHE_PEERS")
def meets_its_peers(lab: Lab) -> None:
    for node in lab.trio.nodes:
        assert call(node.member, "GET", "/cluster").json()["members"] == sorted(lab.trio.members)


@checks("CACHE_DISCOVERY")
def takes_its_members_from_ecs(lab: Lab) -> None:
    assert lab.aws.proxy.calls("ListTasks"), "the node never asked ECS for its service's tasks"
    # The one task of the service: this node (its id from its task metadata).
    assert call(lab.ecs.member, "GET", "/cluster").json()["members"] == [
        f"{on_block_of(lab.ecs.host, 7)}:7000"
    ]
    # CACHE_PEERS, which static discovery would have tried, is never met.
    assert stats(lab.ecs)["peers"] == {}


@checks("CACHE_DISCOVERY_INTERVAL")
def polls_ecs_at_its_interval(lab: Lab) -> None:
    calls = lab.aws.proxy.calls
    seen = len(calls("ListTasks"))
    # At the default interval two more polls take 8 s at least; here about 0.5 s.
    wait_for(
        lambda: len(calls("ListTasks")) >= seen + 2,
        within=3.0,
        what="two more polls of ECS",
    )


@checks("CACHE_ECS_CLUSTER")
def asks_ecs_about_its_cluster(lab: Lab) -> None:
    calls = lab.aws.proxy.calls("ListTasks")
    assert calls and {call["cluster"] for call in calls} == {ECS_CLUSTER}


@checks("CACHE_ECS_SERVICE")
def asks_ecs_about_its_service(lab: Lab) -> None:
    calls = lab.aws.proxy.calls("ListTasks")
    assert calls and {call["serviceName"] for call in calls} == {ECS_SERVICE}


@checks("CACHE_ECS_METADATA_URI")
def takes_its_id_from_task_metadata(lab: Lab) -> None:
    # Under both names: CACHE_ECS_METADATA_URI, and the variable ECS sets.
    for node in (lab.ecs, lab.guarded):
        view = call(node.member, "GET", "/cluster", headers=AUTH).json()
        assert view["node"] == f"{on_block_of(node.host, 7)}:7000"


def emf_lines(node: NodeProcess, count: int) -> list[dict[str, Any]]:
    """The node's first ``count`` CloudWatch EMF lines (from its stdout, in its
    log file), each checked against the specification's shape."""

    def lines() -> list[str]:
        return [line for line in log_of(node).splitlines() if line.startswith('{"_aws"')]

    wait_for(lambda: len(lines()) >= count, within=SCENE_LIMIT, what=f"{count} EMF lines")
    return [check_emf(line.encode() + b"\n") for line in lines()[:count]]


@checks("CACHE_ZONE")
def says_its_zone(lab: Lab) -> None:
    # Set, it wins over the task's; unset, a task's node takes the task's.
    assert call(lab.ecs.member, "GET", "/cluster").json()["zone"] == ECS_ZONE
    guarded = call(lab.guarded.member, "GET", "/cluster", headers=AUTH).json()
    assert guarded["zone"] == METADATA_ZONE
    assert call(lab.solo.member, "GET", "/cluster").json()["zone"] == ""  # no task, no zone
    (line,) = emf_lines(lab.ecs, 1)
    assert line["Zone"] == ECS_ZONE


@checks("CACHE_CLOUDWATCH_METRICS")
def writes_cloudwatch_metrics_on_stdout(lab: Lab) -> None:
    (line,) = emf_lines(lab.ecs, 1)
    # Its member id, from its task metadata.
    assert (line["Service"], line["Node"]) == (ECS_SERVICE, f"{on_block_of(lab.ecs.host, 7)}:7000")
    assert not any(line.startswith('{"_aws"') for line in log_of(lab.guarded).splitlines())


@checks("CACHE_CLOUDWATCH_INTERVAL")
def writes_a_line_per_interval(lab: Lab) -> None:
    first, second = emf_lines(lab.ecs, 2)
    apart = (second["_aws"]["Timestamp"] - first["_aws"]["Timestamp"]) / 1000
    assert CLOUDWATCH_INTERVAL * 0.5 <= apart < 30, apart  # the default would be 60 s


@checks("CACHE_CLOUDWATCH_NAMESPACE")
def names_its_namespace(lab: Lab) -> None:
    (line,) = emf_lines(lab.ecs, 1)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == CLOUDWATCH_NAMESPACE


@checks("CACHE_VNODES")
def places_keys_on_its_vnodes(lab: Lab) -> None:
    for node in lab.trio.nodes:
        assert call(node.member, "GET", "/cluster").json()["vnodes"] == TRIO_VNODES
    key, holders = lab.replicated
    assert holders == set(HashRing(lab.trio.members, vnodes=TRIO_VNODES).owners(key, TRIO_REPLICAS))


@checks("CACHE_REPLICAS")
def writes_each_key_to_its_replicas(lab: Lab) -> None:
    for node in lab.trio.nodes:
        assert call(node.member, "GET", "/cluster").json()["replicas"] == TRIO_REPLICAS
    _, holders = lab.replicated
    assert len(holders) == TRIO_REPLICAS


@checks("CACHE_MAX_BYTES")
def evicts_to_stay_within_its_bytes(lab: Lab) -> None:
    # One kept-alive connection: solo takes only four at once from one address.
    connection = http.client.HTTPConnection(lab.solo.host, lab.solo.port, timeout=SCENE_LIMIT)
    with contextlib.closing(connection):
        for n in range(3 * SOLO_MAX_BYTES // SOLO_MAX_VALUE // 2):
            connection.request("PUT", f"/kv/fill-{n}", b"v" * SOLO_MAX_VALUE)
            answer = connection.getresponse()
            assert answer.status == 204, answer.read()
            answer.read()
    seen = stats(lab.solo)
    assert seen["max_bytes"] == SOLO_MAX_BYTES
    assert seen["store"]["evictions"] > 0
    assert seen["store"]["bytes"] <= SOLO_MAX_BYTES


@checks("CACHE_MAX_KEY_BYTES")
def refuses_a_longer_key(lab: Lab) -> None:
    assert call(lab.solo.member, "PUT", "/kv/" + "k" * SOLO_MAX_KEY, b"v").status == 204
    answer = call(lab.solo.member, "PUT", "/kv/" + "k" * (SOLO_MAX_KEY + 1), b"v")
    assert (answer.status, answer.json()["error"]) == (414, "key_too_long")


@checks("CACHE_MAX_VALUE_BYTES")
def refuses_a_larger_value(lab: Lab) -> None:
    assert call(lab.solo.member, "PUT", "/kv/largest", b"v" * SOLO_MAX_VALUE).status == 204
    answer = call(lab.solo.member, "PUT", "/kv/too-large", b"v" * (SOLO_MAX_VALUE + 1))
    assert (answer.status, answer.json()["error"]) == (413, "too_large")


@checks("CACHE_SWEEP_INTERVAL")
def leaves_expired_entries_until_its_sweep(lab: Lab) -> None:
    # The entry expired 0.1 s after it was written; three sweeps at the
    # default interval (1 s) would have dropped it since.
    time.sleep(max(0.0, lab.expiring_since + 3.0 - time.monotonic()))
    store = stats(lab.guarded, AUTH)["store"]
    assert store["expirations"] == 0
    assert store["items"] >= 1


@checks("CACHE_PEER_TIMEOUT")
def gives_up_on_a_frozen_owner_at_its_peer_timeout(lab: Lab) -> None:
    answer = lab.frozen_owner.together[0]
    assert (answer.status, answer.json()["error"]) == (504, "peer_timeout")
    assert f"did not answer within {PAIR_PEER_TIMEOUT}s" in answer.json()["detail"]


@checks("CACHE_PEER_CONNECT_TIMEOUT")
def gives_up_connecting_at_its_connect_timeout(lab: Lab) -> None:
    # The last failed exchange, whose connection never opened: unreachable.
    member = lab.silent.member
    limit = LONELY_HEALTH["CACHE_PEER_CONNECT_TIMEOUT"]
    assert lab.suspicion.reason == (
        f"{member} could not be reached: cannot connect to {member} within {limit}s."
    )


@checks("CACHE_PEER_POOL_SIZE")
def keeps_its_pool_of_connections_per_peer(lab: Lab) -> None:
    first, *others = lab.trio.members
    keys = [key_away_from(lab.trio.members, first, f"pooled-{n}") for n in range(64)]
    for key in keys:
        put_at_owner(lab.trio.members, key, b"p" * 1024)

    async def read_all_at_once() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def read(key: str) -> int:
                async with session.get(f"http://{first}/kv/{key}") as answer:
                    await answer.read()
                    return answer.status

            return await asyncio.gather(*(read(key) for key in keys))

    # Read at once through the first node, some 32 forwards to each peer in
    # flight: at the default size they would take four connections to each
    # (eight in flight on one, client._transport), and more if the answers
    # come slower.
    assert asyncio.run(read_all_at_once()) == [200] * len(keys)
    host = lab.trio.nodes[0].host
    open_to = {member: established(host, member) for member in others}
    # One for /kv/ requests, one for the rest (gossip).
    assert max(open_to.values()) <= 2, open_to


@checks("CACHE_HEALTH_INTERVAL")
def suspects_for_its_intervals(lab: Lab) -> None:
    # The suspect has as many intervals as failures took to be suspected.
    interval = float(LONELY_HEALTH["CACHE_HEALTH_INTERVAL"])
    assert lab.suspicion.grace == pytest.approx(interval * lab.suspicion.failures)


@checks("CACHE_HEALTH_TIMEOUT")
def fails_a_check_at_its_health_timeout(lab: Lab) -> None:
    # The first failed exchange: connected, and no answer came.
    member = lab.silent.member
    timeout = LONELY_HEALTH["CACHE_HEALTH_TIMEOUT"]
    assert f"request to {member} failed: {member} did not answer within {timeout}s" in (
        lab.suspicion.log
    )


@checks("CACHE_HEALTH_FAILURES")
def suspects_after_its_failures(lab: Lab) -> None:
    assert lab.suspicion.failures == int(LONELY_HEALTH["CACHE_HEALTH_FAILURES"])


@checks("CACHE_BREAKER_FAILURES")
def opens_its_breaker_after_its_failures(lab: Lab) -> None:
    scene = lab.frozen_owner
    assert [answer.status for answer in scene.together] == [504, 504]
    assert (scene.next.status, scene.next.json()["error"]) == (503, "peer_circuit_open")


@checks("CACHE_BREAKER_COOLDOWN")
def keeps_its_breaker_open_for_its_cooldown(lab: Lab) -> None:
    answer = lab.frozen_owner.after_cooldown
    assert (answer.status, answer.json()["error"]) == (503, "peer_circuit_open")


@checks("CACHE_DRAIN_TIMEOUT")
def gives_up_its_handoff_at_its_drain_timeout(lab: Lab) -> None:
    log = lab.frozen_owner.stop_log
    assert "handing off entries (up to 0s)" in log
    assert "drain gave up after" in log
    assert "drained:" not in log


@checks("CACHE_AUTH_TOKEN")
def accepts_each_of_its_tokens_and_no_other(lab: Lab) -> None:
    assert call(lab.guarded.member, "GET", "/stats").status == 401
    for token in CLIENT_TOKENS:
        answer = call(
            lab.guarded.member, "GET", "/stats", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 200, token


@checks("CACHE_AUTH_TOKEN_FILE")
def accepts_the_tokens_of_its_file(lab: Lab) -> None:
    for token, status in ((FILE_TOKEN, 200), ("tok-unknown", 401)):
        answer = call(
            lab.guarded.member, "GET", "/stats", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == status, token


@checks("CACHE_PEER_TOKEN")
def lets_only_its_peer_token_act_as_a_node(lab: Lab) -> None:
    def gossip(authorization: str) -> Answer:
        return call(
            lab.guarded.member, "POST", "/internal/gossip", b"{}", {"Authorization": authorization}
        )

    refused_client = gossip(AUTH["Authorization"])
    assert (refused_client.status, refused_client.json()["error"]) == (403, "not_a_peer")
    # Let in: the message itself is what it refuses.
    assert gossip(f"Peer {PEER_TOKEN}").json()["error"] == "bad_gossip"


@checks("CACHE_MAX_CONNECTIONS")
def refuses_connections_beyond_its_limit(lab: Lab) -> None:
    # One connection per address: only the node's whole limit applies.
    sources = [on_block_of(lab.solo.host, 100 + n) for n in range(SOLO_MAX_CONNECTIONS + 4)]
    answers = connections_from(lab.solo, sources)
    assert any(not answer.startswith(b"HTTP/1.1 200") for answer in answers), "none refused"
    assert stats(lab.solo)["refusals"]["connections_at_limit"] > 0


@checks("CACHE_MAX_CONNECTIONS_PER_ADDRESS")
def refuses_connections_beyond_its_limit_per_address(lab: Lab) -> None:
    source = on_block_of(lab.solo.host, 200)
    answers = connections_from(lab.solo, [source] * (SOLO_PER_ADDRESS + 2))
    assert any(not answer.startswith(b"HTTP/1.1 200") for answer in answers), "none refused"
    assert stats(lab.solo)["refusals"]["connections_per_address"] > 0


@checks("CACHE_IDLE_TIMEOUT")
def closes_a_connection_left_idle(lab: Lab) -> None:
    scene = lab.quiet_connections
    assert "idle" in scene.first_heard, "the idle connection is still open"
    assert scene.received["idle"] == b""  # closed, with nothing said


@checks("CACHE_HEAD_TIMEOUT")
def closes_a_connection_without_a_head(lab: Lab) -> None:
    scene = lab.quiet_connections
    assert scene.received["head"].startswith(b"HTTP/1.1 408")
    assert b'"head_timeout"' in scene.received["head"]
    assert scene.before("head", "idle")


@checks("CACHE_BODY_TIMEOUT")
def answers_408_to_a_body_that_stops(lab: Lab) -> None:
    scene = lab.quiet_connections
    assert scene.received["body"].startswith(b"HTTP/1.1 408")
    assert b'"body_timeout"' in scene.received["body"]
    assert scene.before("body", "idle")


@checks("CACHE_WRITE_TIMEOUT")
def closes_a_connection_that_does_not_read(lab: Lab) -> None:
    keys = [f"big-{n}" for n in range(BIG_ANSWER // VALUE_LIMIT)]
    for key in keys:
        assert call(lab.guarded.member, "PUT", f"/kv/{key}", b"b" * VALUE_LIMIT, AUTH).status == 204
    batch = encode_keys(keys)
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.settimeout(SCENE_LIMIT)
        reader.connect((lab.guarded.host, lab.guarded.port))
        reader.sendall(
            f"POST {GET_PATH} HTTP/1.1\r\nHost: lab\r\n{AUTH_LINE}\r\n"
            f"Content-Length: {len(batch)}\r\n\r\n".encode()
            + batch
        )
        # Nothing is read until the node says it gave up on the answer (a
        # debug line); at the default write timeout (10 s) it would not have yet.
        wait_for(
            lambda: re.search(r"a client did not read \d+ bytes in time", log_of(lab.guarded)),
            within=8.0,
            what="the node giving up on a reader",
        )
        received = 0
        with contextlib.suppress(ConnectionResetError):
            for _ in range(100_000):
                chunk = reader.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
    assert received < BIG_ANSWER


@checks("CACHE_MAX_INFLIGHT_BYTES")
def refuses_a_body_beyond_its_bytes_in_flight(lab: Lab) -> None:
    answer = call(lab.ecs.member, "PUT", "/kv/heavy", b"h" * (3 * 1024 * 1024 // 2))
    assert (answer.status, answer.json()["error"]) == (503, "busy")


@checks("CACHE_LOG_LEVEL")
def logs_at_its_level(lab: Lab) -> None:
    # A request the parser refuses is logged at debug level.
    with socket.create_connection((lab.guarded.host, lab.guarded.port), timeout=SCENE_LIMIT) as bad:
        assert answer_on(bad, b"BOGUS\x01 / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 400")
    wait_for(
        lambda: re.search(r"(?m)^\S+ \S+ DEBUG ", log_of(lab.guarded)),
        within=SCENE_LIMIT,
        what="a debug line",
    )


@checks("CACHE_LOG_FORMAT")
def logs_json_lines(lab: Lab) -> None:
    lines = log_of(lab.solo).splitlines()
    records = [orjson.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any("listening on" in record["message"] for record in records)


@checks("CACHE_ACCESS_LOG")
def logs_each_request(lab: Lab) -> None:
    assert call(lab.solo.member, "GET", "/kv/access-probe").status == 404
    wait_for(
        lambda: '"path":"/kv/access-probe","status":404' in log_of(lab.solo),
        within=SCENE_LIMIT,
        what="an access log line",
    )


@checks("CACHE_REQUEST_METRICS")
def does_not_count_requests(lab: Lab) -> None:
    for _ in range(3):
        call(lab.solo.member, "GET", "/kv/uncounted")
    metrics = call(lab.solo.member, "GET", "/metrics").body.decode()
    assert "\ncache_hits_total " in metrics  # the other metrics are there
    assert "\ncache_requests_total{" not in metrics


@checks("CACHE_COALESCE")
def forwards_each_read_of_a_key_on_its_own(lab: Lab) -> None:
    scene = lab.frozen_owner
    assert [answer.status for answer in scene.together] == [504, 504]
    assert (scene.forwards, scene.coalesced) == (2, 0)


@checks("CACHE_NEAR_CACHE")
def keeps_no_copies(lab: Lab) -> None:
    node = lab.trio.nodes[2]
    key = key_away_from(lab.trio.members, node.member, "never-copied")
    put_at_owner(lab.trio.members, key, b"hot")
    answers = [call(node.member, "GET", f"/kv/{key}") for _ in range(10)]
    assert [answer.status for answer in answers] == [200] * 10
    assert not any("x-cache-near-copy-of" in answer.headers for answer in answers)
    assert near(node) == {"enabled": False}


@checks("CACHE_NEAR_CACHE_BYTES")
def keeps_copies_within_its_bytes(lab: Lab) -> None:
    node = lab.trio.nodes[0]
    for n in range(3):
        key = key_away_from(lab.trio.members, node.member, f"bulky-{n}")
        put_at_owner(lab.trio.members, key, b"b" * 30 * 1024)
        assert call(node.member, "GET", f"/kv/{key}").status == 200
    section = near(node)
    assert section["evictions"] > 0
    assert section["bytes"] <= 64 * 1024


@checks("CACHE_NEAR_CACHE_TTL")
def serves_a_copy_for_its_ttl_at_most(lab: Lab) -> None:
    node = lab.trio.nodes[1]
    key = key_away_from(lab.trio.members, node.member, "short-lived")
    put_at_owner(lab.trio.members, key, b"brief")
    admitted = near(node)["admitted"]
    assert call(node.member, "GET", f"/kv/{key}").status == 200
    assert near(node)["admitted"] == admitted + 1
    time.sleep(2 * NEAR_CACHE_TTL)  # the copy's life, twice; less than the default's
    again = call(node.member, "GET", f"/kv/{key}")
    assert again.status == 200
    assert "x-cache-near-copy-of" not in again.headers


@checks("CACHE_NEAR_CACHE_THRESHOLD")
def copies_a_key_after_its_threshold_of_reads(lab: Lab) -> None:
    node = lab.trio.nodes[0]
    key = key_away_from(lab.trio.members, node.member, "first-read")
    put_at_owner(lab.trio.members, key, b"hot")
    admitted = near(node)["admitted"]
    assert call(node.member, "GET", f"/kv/{key}").status == 200
    assert near(node)["admitted"] == admitted + 1


# -- the tests


def test_every_row_of_the_configuration_table_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(VARIABLES)


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_variable_has_its_documented_effect(variable: str, lab: Lab) -> None:
    check = CHECKS.get(variable)
    if check is None:
        pytest.fail(f"no check for {variable}")
    check(lab)


@pytest.mark.parametrize(("old", "new"), RENAMED, ids=[old for old, _ in RENAMED])
def test_an_old_near_cache_name_works_without_the_new_one(old: str, new: str, lab: Lab) -> None:
    node = lab.solo if old == "CACHE_HOT_CACHE" else lab.guarded
    assert near_setting(node, new, AUTH) == PARSE[new](OLD_NAMES_ALONE[old])


@pytest.mark.parametrize(("old", "new"), RENAMED, ids=[new for _, new in RENAMED])
def test_the_new_near_cache_name_beats_the_old_one(old: str, new: str, lab: Lab) -> None:
    assert PARSE[new](BOTH_NAMES[new]) != PARSE[new](BOTH_NAMES[old])
    assert near_setting(lab.trio.nodes[1], new) == PARSE[new](BOTH_NAMES[new])


def test_a_flag_beats_its_variable(lab: Lab) -> None:
    # guarded was given --port 7000 and CACHE_PORT=7124.
    assert lab.guarded.port == 7000
    assert call(lab.guarded.member, "GET", "/check-alive").status == 200
    assert refused(lab.guarded.host, GUARDED_ENV_PORT)
