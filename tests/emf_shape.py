"""CloudWatch Embedded Metric Format: the shape the specification asks for.

The checks are the specification's rules ("Specification: Embedded metric
format", CloudWatch User Guide), written out: a root ``_aws`` object with a
millisecond ``Timestamp`` and ``CloudWatchMetrics`` directives; each
directive a ``Namespace`` of 1 to 255 characters, ``Dimensions`` as an array
of dimension sets (each at most 30 names, each name a member of the root
whose value is a string), ``Metrics`` of at most 100 objects with a ``Name``
(a member of the root whose value is a number) and a unit CloudWatch knows.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["check_emf"]

# CloudWatch's units (MetricDatum.Unit).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def check_emf(line: bytes) -> dict[str, Any]:
    """The document of one EMF line, after checking it against the specification."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1, line
    document = orjson.loads(line)
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        namespace = directive["Namespace"]
        assert isinstance(namespace, str) and 0 < len(namespace) <= 255
        for dimension_set in directive["Dimensions"]:
            assert 0 < len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str) and document[name], name
        metrics = directive["Metrics"]
        assert 0 < len(metrics) <= 100
        for metric in metrics:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            name = metric["Name"]
            assert isinstance(name, str) and 0 < len(name) <= 255
            assert metric.get("Unit", "None") in UNITS
            assert isinstance(document[name], int | float) and not isinstance(document[name], bool)
    return dict(document)
