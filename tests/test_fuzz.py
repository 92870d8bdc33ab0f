"""A live node, fuzzed against its own OpenAPI document (node/http/openapi.json).

schemathesis generates requests for every operation in the document, valid
and invalid ones (its examples, coverage and fuzzing phases), sends them to a
real ``python -m node`` process running with auth on, and checks every
answer: no 5xx; a documented status and content type; bodies and headers that
match their schemas, so every error is the JSON error ``{"error", "detail"}``;
401 without the token; 405 with ``Allow`` for a method a path does not list.
Valid requests must be accepted, invalid ones refused.

The fuzzing phase draws at most ``MAX_EXAMPLES`` requests per operation, so
the module takes seconds. Run with ``-s`` to see how many inputs were tried
(and the seed: ``FUZZ_SEED=<seed>`` draws the same inputs again), and with
``FUZZ_MAX_EXAMPLES=1000`` to look harder.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis

from node.http.openapi import load_document
from node.local_cluster import NodeProcess

from .conftest import next_subnet
from .http_call import call

TOKEN = "fuzz-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
# Client tokens need a peer token beside them (node.config).
PEER_TOKEN = "fuzz-peers"
# Enough to run in seconds; set FUZZ_MAX_EXAMPLES for a deeper run.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "50"))
DOCUMENT = orjson.loads(load_document())
# Statuses that mean "accepted" for a valid request: done, or a miss.
ACCEPTED = ["2xx", "404"]
# Statuses with which the node refuses an invalid request.
REFUSED = ["400", "401", "404", "405", "408", "413", "414"]
# Request bodies that are binary frames (batch, transfer): any bytes are valid
# for their schema, but random bytes are rarely a well-formed frame, so "valid
# data was refused" cannot be told from "the fuzzer's bytes are no frame" there.
# Their documented examples are real frames and must be accepted.
_FRAMES = {"#/components/schemas/BatchFrame", "#/components/schemas/TransferBody"}
FRAME_OPERATIONS = sorted(
    operation["operationId"]
    for item in DOCUMENT["paths"].values()
    for operation in item.values()
    if isinstance(operation, dict)
    and operation.get("requestBody", {})
    .get("content", {})
    .get("application/octet-stream", {})
    .get("schema", {})
    .get("$ref")
    in _FRAMES
)


def accepting(*statuses: str) -> dict[str, object]:
    return {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *statuses]}}


CONFIG = schemathesis.Config.from_dict(
    {
        **({"seed": int(os.environ["FUZZ_SEED"])} if "FUZZ_SEED" in os.environ else {}),
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
        # Stateful testing needs links between operations; the document has none.
        "phases": {"stateful": {"enabled": False}},
        "auth": {
            "openapi": {
                "bearerAuth": {"bearer": TOKEN},
                "peerAuth": {"api_key": f"Peer {PEER_TOKEN}"},
            }
        },
        "request-timeout": 10,
        "checks": {
            **accepting(),
            "negative_data_rejection": {"expected-statuses": REFUSED},
        },
        "operations": [
            {"include-operation-id": FRAME_OPERATIONS, "checks": accepting("400")},
            # Limits in bytes (of a key's UTF-8, of a value, of a JSON body) that
            # JSON Schema cannot state: a valid request may still be over them.
            # A peer's request (with X-Cache-Hop) may also be refused for the
            # state of the node: an older version than it holds (409), a key it
            # does not own (421).
            {"include-path": "/kv/{key}", "checks": accepting("409", "413", "414", "421")},
            # Member ids are host:port, which JSON Schema cannot say of an
            # object's keys in OpenAPI 3.0.
            {"include-operation-id": "gossip", "checks": accepting("400", "413")},
            # The flush's version is an unsigned 64-bit number: 20 digits may
            # still be over 2^64 - 1, which a pattern cannot say briefly.
            {"include-operation-id": "flushAll", "checks": accepting("400")},
            # A conditional write may be refused for the entry it meets (incr of
            # a value that is not a number) or for the node's state.
            {
                "include-operation-id": "mutate",
                "checks": accepting("400", "409", "413", "414", "421"),
            },
        ],
    }
)
schema = schemathesis.openapi.from_path(
    Path(__file__).parent.parent / "node" / "http" / "openapi.json", config=CONFIG
)

# Per operation label ("PUT /kv/{key}"): answers by status class ("2xx", "4xx"...).
TRIED: defaultdict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module")
def fuzzed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for every operation, like a long-lived task: what one request
    stores, later ones read, overwrite and delete."""
    log = tmp_path_factory.mktemp("fuzz") / "node.log"
    node = NodeProcess(
        host=f"{next_subnet()}.1",
        args=["--auth-token", TOKEN, "--peer-token", PEER_TOKEN],
        log_path=str(log),
    )
    node.start()
    try:
        node.wait_alive()
        # The document's example key, so that its example reads are hits.
        stored = call(node.member, "PUT", "/kv/user/42/photo?ttl=3600", b"photo", BEARER)
        assert stored.status == 204
        yield node
    finally:
        node.stop()
    total = sum(sum(statuses.values()) for statuses in TRIED.values())
    print(f"\nfuzzing: {total} inputs over {len(TRIED)} operations (FUZZ_SEED={CONFIG.seed})")
    for label, statuses in sorted(TRIED.items()):
        print(f"  {label:32} {sum(statuses.values()):4}  {dict(sorted(statuses.items()))}")
    # A 500 is caught by the checks; this catches what the node logged and survived.
    assert "Traceback" not in log.read_text(), f"the node logged a traceback; see {log}"


@schema.parametrize()
def test_every_answer_conforms_to_the_document(
    case: schemathesis.Case[Any], fuzzed_node: NodeProcess
) -> None:
    give_one_ttl(case)
    response = case.call(base_url=fuzzed_node.url)
    TRIED[case.operation.label][f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, transport_kwargs={"base_url": fuzzed_node.url})


def give_one_ttl(case: schemathesis.Case[Any]) -> None:
    """``?ttl=`` and ``X-Cache-TTL`` may both be given only when equal, a rule the
    document states but JSON Schema cannot: a valid case that draws two
    different TTLs sends the query's in both places."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    ttl = (case.query or {}).get("ttl")
    if ttl is not None and case.headers and "X-Cache-TTL" in case.headers:
        case.headers["X-Cache-TTL"] = ttl
