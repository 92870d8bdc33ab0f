"""CloudWatch Embedded Metric Format lines (``node.cloudwatch``): their shape,
checked against the specification's rules (``tests/emf_shape``), and their
figures. A real node's lines are checked in tests/test_settings_table.py.
"""

from __future__ import annotations

import asyncio

from node.cloudwatch import EmfReporter, Figures

from .emf_shape import check_emf


def figures(**changed: int) -> Figures:
    base = {
        "requests": 0, "hits": 0, "misses": 0, "evictions": 0, "forwards": 0,
        "items": 0, "bytes": 0, "max_bytes": 1000, "members": 3,
    }  # fmt: skip
    return Figures(**{**base, **changed})


def test_a_line_has_the_specified_shape_counters_since_the_last_and_gauges_now() -> None:
    now = [figures(requests=10, hits=4, misses=6, bytes=100, items=2)]
    reporter = EmfReporter(
        lambda: now[0], namespace="Test", service="svc", node="10.0.0.1:7000", interval=60
    )
    now[0] = figures(requests=25, hits=10, misses=9, evictions=1, forwards=5, items=3, bytes=250)
    document = check_emf(reporter.line())
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test"
    assert (document["Service"], document["Node"]) == ("svc", "10.0.0.1:7000")
    counters = {name: document[name] for name in ("Requests", "Hits", "Misses", "Evictions")}
    assert counters == {"Requests": 15, "Hits": 6, "Misses": 3, "Evictions": 1}
    assert (document["Forwards"], document["Items"], document["Bytes"]) == (5, 3, 250)
    assert (document["BytesUsedPercent"], document["Members"]) == (25.0, 3)
    # The next line counts from this one.
    assert check_emf(reporter.line())["Requests"] == 0


def test_a_node_with_a_zone_adds_the_zones_dimension_set() -> None:
    reporter = EmfReporter(
        figures, namespace="T", service="svc", node="n:7000", interval=60, zone="eu-west-1b"
    )
    document = check_emf(reporter.line())
    assert document["Zone"] == "eu-west-1b"
    assert ["Service", "Zone"] in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_outside_a_service_the_service_dimension_says_local() -> None:
    reporter = EmfReporter(figures, namespace="Test", service="", node="n:7000", interval=60)
    assert check_emf(reporter.line())["Service"] == "local"


async def test_lines_are_written_each_interval_until_stopped() -> None:
    written: list[bytes] = []
    reporter = EmfReporter(
        figures, namespace="T", service="s", node="n", interval=0.01, write=written.append
    )
    reporter.start()
    for _ in range(200):
        if len(written) >= 3:
            break
        await asyncio.sleep(0.01)
    await reporter.stop()
    count = len(written)
    assert count >= 3
    for line in written:
        check_emf(line)
    await asyncio.sleep(0.05)
    assert len(written) == count  # stopped
