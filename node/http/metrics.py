"""Request metrics and the Prometheus text format.

``RequestMetrics`` counts every request by route, method and status and
keeps a latency histogram per route; a route's ``RouteMetrics`` is called
once per request, so it does a dict lookup, a bisect and two additions,
nothing more.

``render_prometheus`` writes families in the text exposition format
(version 0.0.4): ``# HELP``, ``# TYPE``, then samples. Names follow the
Prometheus conventions: a ``cache_`` prefix, base units (seconds, bytes),
``_total`` on counters.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "LATENCY_BUCKETS",
    "Family",
    "RequestMetrics",
    "RouteMetrics",
    "per_label",
    "render_prometheus",
    "simple",
]

# Seconds. Dense below 10 ms, where a cache lives; sparse up to the timeouts.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(slots=True)
class RouteMetrics:
    """One route's requests by (method, status) and its latency histogram."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


class RequestMetrics:
    """Requests by (route, method, status) and latency by route.

    The route guard takes each route's ``RouteMetrics`` once, when it
    decorates the handler, so a request costs no lookup of its route.
    """

    def __init__(self) -> None:
        self.routes: dict[str, RouteMetrics] = {}

    def route(self, route: str) -> RouteMetrics:
        return self.routes.setdefault(route, RouteMetrics())

    def total(self) -> int:
        """Requests counted, every route and status."""
        return sum(sum(metrics.requests.values()) for metrics in self.routes.values())

    def families(self) -> list[Family]:
        requests = Family(
            "cache_requests_total", "counter", "HTTP requests served, by route, method and status."
        )
        latency = Family(
            "cache_request_duration_seconds", "histogram", "Time to serve a request, by route."
        )
        for route, metrics in sorted(self.routes.items()):
            for (method, status), count in sorted(metrics.requests.items()):
                requests.add(count, route=route, method=method, status=str(status))
            if not metrics.requests:
                continue  # a route nobody has asked for yet
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), metrics.counts, strict=True):
                cumulative += count
                latency.add(cumulative, suffix="_bucket", route=route, le=_le(bound))
            latency.add(metrics.total, suffix="_sum", route=route)
            latency.add(cumulative, suffix="_count", route=route)
        return [requests, latency]


@dataclass(slots=True)
class Family:
    """One metric family: a name, a type, a help line and its samples."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, Mapping[str, str], float]] = field(default_factory=list)

    def add(self, value: float, *, suffix: str = "", **labels: str) -> Family:
        self.samples.append((suffix, labels, value))
        return self


def render_prometheus(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def simple(name: str, kind: str, help_text: str, value: float) -> Family:
    """A family with one unlabelled sample."""
    return Family(name, kind, help_text).add(value)


def per_label(
    name: str, kind: str, help_text: str, label: str, values: Mapping[str, float]
) -> Family:
    """A family with one sample per value of one label."""
    family = Family(name, kind, help_text)
    for label_value, value in sorted(values.items()):
        family.add(value, **{label: label_value})
    return family


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
