"""Node configuration: one frozen ``Config`` built from flags and ``CACHE_*`` env.

Every setting is declared once in ``SETTINGS``; the command line, the
environment, ``--help`` and the README's configuration table all come from
that list. A flag beats the environment, which beats the default. An invalid
value raises ``ConfigError`` with one line that names the setting.

This is the only module that reads the environment (through ``from_sources``'s
``environ`` argument, which the CLI passes ``os.environ``).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .cache.charge import max_entry_charge

__all__ = [
    "MANAGEMENT_VARIABLES",
    "SETTINGS",
    "Config",
    "ConfigError",
    "Setting",
    "parse_member",
    "parse_size",
    "unknown_variables",
]

MiB = 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value the node cannot run with. The message is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a node needs to run. Sizes in bytes, durations in seconds."""

    host: str = "0.0.0.0"
    port: int = 7000
    # 0: no memcached listener.
    memcached_port: int = 11211
    # None: allowed unless a peer token is set (see memcached_flush_allowed).
    memcached_flush_all: bool | None = None
    advertise: str = ""
    peers: tuple[str, ...] = ()
    discovery: str = "static"
    discovery_interval: float = 5.0
    ecs_cluster: str = ""
    ecs_service: str = ""
    ecs_metadata_uri: str = ""
    vnodes: int = 160
    replicas: int = 1
    max_bytes: int = 256 * MiB
    max_key_bytes: int = 250
    max_value_bytes: int = 1 * MiB
    sweep_interval: float = 1.0
    peer_timeout: float = 1.0
    peer_connect_timeout: float = 0.5
    peer_pool_size: int = 32
    health_interval: float = 0.5
    health_timeout: float = 0.5
    health_failures: int = 3
    breaker_failures: int = 3
    breaker_cooldown: float = 1.0
    drain_timeout: float = 20.0
    auth_token: tuple[str, ...] = field(default=(), repr=False)
    auth_token_file: str = ""
    max_connections: int = 4096
    max_connections_per_address: int = 1024
    idle_timeout: float = 60.0
    head_timeout: float = 5.0
    body_timeout: float = 10.0
    write_timeout: float = 10.0
    # None: a quarter of max_bytes, at least 32 MiB (see inflight_limit).
    max_inflight_bytes: int | None = None
    peer_token: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = False
    coalesce: bool = True
    near_cache: bool = True
    # None: one eighth of max_bytes (see near_cache_limit).
    near_cache_bytes: int | None = None
    near_cache_ttl: float = 1.0
    near_cache_threshold: int = 4
    request_metrics: bool = True
    # "": in a task, its availability zone (node.app.resolve_zone); else none.
    zone: str = ""
    cloudwatch_metrics: bool = False
    cloudwatch_interval: float = 60.0
    cloudwatch_namespace: str = "EcsKvCache"

    @property
    def inflight_limit(self) -> int:
        """Bytes of request bodies and large answers in flight at once."""
        if self.max_inflight_bytes is not None:
            return self.max_inflight_bytes
        return max(32 * MiB, self.max_bytes // 4)

    @property
    def memcached_flush_allowed(self) -> bool:
        """Whether memcached's flush_all may empty the cluster. Unless said
        otherwise, only while the tokens do not tell clients from nodes: with
        a peer token, HTTP's flush is a peer's alone, and so is this."""
        if self.memcached_flush_all is not None:
            return self.memcached_flush_all
        return not self.peer_token

    @property
    def near_cache_limit(self) -> int:
        """Bytes the near cache may hold: NEAR_CACHE_BYTES, else MAX_BYTES / 8."""
        if self.near_cache_bytes is not None:
            return self.near_cache_bytes
        return self.max_bytes // 8


# -- value parsers: each takes the raw string and returns the typed value or
# raises ValueError with a phrase that completes "expected ...".


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(_expected_range("an integer", low, high)) from None
        if value < low or (high is not None and value > high):
            raise ValueError(_expected_range("an integer", low, high))
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"a number of seconds from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def _expected_range(what: str, low: int, high: int | None) -> str:
    return f"{what} from {low} to {high}" if high is not None else f"{what} >= {low}"


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(raw: str) -> int:
    """``"256MiB"``, ``"64mb"``, ``"1048576"`` -> bytes. Raises ValueError."""
    match = _SIZE.match(raw)
    if not match:
        raise ValueError("a size such as 1048576, 512KiB, 256MiB or 1GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def _size_at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = parse_size(raw)
        if value < low:
            raise ValueError(f"a size of at least {low} bytes")
        return value

    return parse


_MEMBER = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


def parse_member(raw: str) -> str:
    """``"host:port"`` with a port from 1 to 65535. Raises ValueError."""
    member = raw.strip()
    if not _MEMBER.match(member) or not 1 <= int(member.rsplit(":", 1)[1]) <= 65535:
        raise ValueError(f"host:port with a port from 1 to 65535, got {member!r}")
    return member


def _members(raw: str) -> tuple[str, ...]:
    parts = [part for part in raw.replace(" ", ",").split(",") if part.strip()]
    return tuple(sorted({parse_member(part) for part in parts}))


def _advertise(raw: str) -> str:
    return parse_member(raw) if raw.strip() else ""


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return parse


def _log_level(raw: str) -> str:
    return _choice("debug", "info", "warning", "error")(raw).upper()


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("true or false")


def _tokens(raw: str) -> tuple[str, ...]:
    tokens = tuple(token.strip() for token in raw.split(",") if token.strip())
    if any(not token.isprintable() or " " in token for token in tokens):
        raise ValueError("printable tokens without spaces, comma-separated")
    return tokens


def _text(raw: str) -> str:
    return raw.strip()


def _zone(raw: str) -> str:
    zone = raw.strip()
    if len(zone) > 64 or not zone.isprintable() or " " in zone:
        raise ValueError("a zone name of at most 64 printable characters, no spaces")
    return zone


def _namespace(raw: str) -> str:
    namespace = raw.strip()
    if not 0 < len(namespace) <= 255:
        raise ValueError("a CloudWatch namespace of 1 to 255 characters")
    return namespace


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One configurable field: its env variable, flag, parser and help line."""

    field: str
    parse: Callable[[str], Any]
    help: str
    shown_default: str
    # Variables read after CACHE_<FIELD>, for settings that a platform sets
    # under its own name (ECS sets ECS_CONTAINER_METADATA_URI_V4).
    fallback_env: tuple[str, ...] = ()
    # Never echoed back in errors (tokens).
    secret: bool = False

    @property
    def env(self) -> str:
        return "CACHE_" + self.field.upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        return (self.env, *self.fallback_env)

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting(field="host", parse=_text, shown_default="0.0.0.0",
            help="Address to listen on."),
    Setting(field="port", parse=_int_in(1, 65535), shown_default="7000",
            help="TCP port to listen on."),
    Setting(field="memcached_port", parse=_int_in(0, 65535), shown_default="11211",
            help="TCP port of the memcached protocol, on HOST beside HTTP; 0 turns it off."),
    Setting(field="memcached_flush_all", parse=_boolean,
            shown_default="(true without CACHE_PEER_TOKEN, false with one)",
            help="Whether memcached's flush_all may empty the whole cluster (false: it is "
                 "refused, like memcached -F)."),
    Setting(field="advertise", parse=_advertise, shown_default="host:port",
            help="Member id peers use to reach this node (host:port). Empty: the task's "
                 "private IP from ECS task metadata when there is some, else HOST:PORT, or "
                 "this machine's private IP when HOST is 0.0.0.0."),
    Setting(field="peers", parse=_members, shown_default="(none)",
            help="Static members, comma-separated host:port; listing this node too is fine."),
    Setting(field="discovery", parse=_choice("static", "ecs"), shown_default="static",
            help="Where members come from: static (PEERS) or ecs (the service's tasks)."),
    Setting(field="discovery_interval", parse=_seconds(0.1, 3600), shown_default="5",
            help="Seconds between discovery polls (ECS); jittered by up to 20%%."),
    Setting(field="ecs_cluster", parse=_text, shown_default="(none)",
            help="ECS cluster name or ARN, for ecs discovery."),
    Setting(field="ecs_service", parse=_text, shown_default="(none)",
            help="ECS service name, for ecs discovery."),
    Setting(field="ecs_metadata_uri", parse=_text, shown_default="(set by ECS)",
            fallback_env=("ECS_CONTAINER_METADATA_URI_V4",),
            help="ECS task metadata endpoint v4; gives this node its private IP in a task."),
    Setting(field="vnodes", parse=_int_in(1, 4096), shown_default="160",
            help="Virtual nodes per member on the hash ring."),
    Setting(field="replicas", parse=_int_in(1, 16), shown_default="1",
            help="Copies of each key: writes go to this many owners, reads fail over "
                 "between them."),
    Setting(field="max_bytes", parse=_size_at_least(1024 * 1024), shown_default="256MiB",
            help="Memory bound of the store, entries' overhead included."),
    Setting(field="max_key_bytes", parse=_int_in(1, 65536), shown_default="250",
            help="Longest key, in bytes of UTF-8."),
    Setting(field="max_value_bytes", parse=_size_at_least(1), shown_default="1MiB",
            help="Largest value; a bigger PUT gets 413."),
    Setting(field="sweep_interval", parse=_seconds(0.01, 3600), shown_default="1",
            help="Seconds between sweeps that drop expired entries nobody reads."),
    Setting(field="peer_timeout", parse=_seconds(0.01, 300), shown_default="1",
            help="Seconds a forwarded request may take before 504."),
    Setting(field="peer_connect_timeout", parse=_seconds(0.01, 60), shown_default="0.5",
            help="Seconds to open a connection to a peer before 502."),
    Setting(field="peer_pool_size", parse=_int_in(1, 4096), shown_default="32",
            help="Keep-alive connections kept per peer."),
    Setting(field="health_interval", parse=_seconds(0.05, 60), shown_default="0.5",
            help="Seconds between health checks of each peer."),
    Setting(field="health_timeout", parse=_seconds(0.01, 60), shown_default="0.5",
            help="Seconds a health check may take before it counts as failed."),
    Setting(field="health_failures", parse=_int_in(1, 100), shown_default="3",
            help="Failed checks in a row before a peer is suspect; it leaves the ring "
                 "unless it refutes within as many intervals more."),
    Setting(field="breaker_failures", parse=_int_in(1, 1000), shown_default="3",
            help="Failed forwards in a row that open a peer's circuit breaker."),
    Setting(field="breaker_cooldown", parse=_seconds(0.01, 600), shown_default="1",
            help="Seconds an open breaker refuses requests before one trial (doubles to 10 s)."),
    Setting(field="drain_timeout", parse=_seconds(0, 3600), shown_default="20",
            help="Seconds a stopping node may spend handing its entries to peers; keep it "
                 "below the ECS stopTimeout (the template and the CLI size both to the task)."),
    Setting(field="auth_token", parse=_tokens, shown_default="(none: auth off)", secret=True,
            help="Bearer tokens, comma-separated: any is accepted, the first is sent to "
                 "peers. List new,old to rotate without downtime."),
    Setting(field="auth_token_file", parse=_text, shown_default="(none)",
            help="File with more tokens, one per line (for secrets mounted as files)."),
    Setting(field="peer_token", parse=_tokens, shown_default="(none)", secret=True,
            help="Tokens the nodes prove to each other that they are peers, comma-separated "
                 "(the first is sent); needed with CACHE_AUTH_TOKEN, a node refuses to start "
                 "without."),
    Setting(field="max_connections", parse=_int_in(16, 1_000_000), shown_default="4096",
            help="Open connections beyond which a new one gets 503 and is closed; the last "
                 "sixteenth are kept for the cluster's own members."),
    Setting(field="max_connections_per_address", parse=_int_in(1, 1_000_000),
            shown_default="1024",
            help="Open connections from one client address beyond which a new one gets 503."),
    Setting(field="idle_timeout", parse=_seconds(1, 3600), shown_default="60",
            help="Seconds a kept-alive connection may sit idle between requests before it "
                 "is closed."),
    Setting(field="head_timeout", parse=_seconds(0.1, 600), shown_default="5",
            help="Seconds a request head may take to arrive, from its first byte or the "
                 "connection's start, before the connection is closed."),
    Setting(field="body_timeout", parse=_seconds(0.1, 600), shown_default="10",
            help="Seconds a request body may take to arrive before 408 (a memcached value or "
                 "command: before its connection is closed)."),
    Setting(field="write_timeout", parse=_seconds(0.1, 600), shown_default="10",
            help="Seconds a client may take to read a large answer before its connection "
                 "is closed."),
    Setting(field="max_inflight_bytes", parse=_size_at_least(1024 * 1024),
            shown_default="(MAX_BYTES / 4, at least 32MiB)",
            help="Bytes of request bodies and large answers in flight at once; beyond it a "
                 "request with a body gets 503."),
    Setting(field="log_level", parse=_log_level, shown_default="info",
            help="debug, info, warning or error."),
    Setting(field="log_format", parse=_choice("text", "json"), shown_default="text",
            help="text, or json for one JSON object per line (CloudWatch)."),
    Setting(field="access_log", parse=_boolean, shown_default="false",
            help="Log one line per request (off: it costs throughput)."),
    Setting(field="request_metrics", parse=_boolean, shown_default="true",
            help="Count and time every request for /metrics; off only to measure its cost."),
    Setting(field="coalesce", parse=_boolean, shown_default="true",
            help="Concurrent forwarded GETs (and HEADs) of one key share one request to "
                 "the owner."),
    # The near cache was called the hot cache before 0.2: the old names still work.
    Setting(field="near_cache", parse=_boolean, shown_default="true",
            fallback_env=("CACHE_HOT_CACHE",),
            help="Keep short-lived copies of hot keys owned by other nodes (README: Hot keys)."),
    Setting(field="near_cache_bytes", parse=_size_at_least(64 * 1024),
            shown_default="(MAX_BYTES / 8)", fallback_env=("CACHE_HOT_CACHE_BYTES",),
            help="Memory bound of those copies, on top of MAX_BYTES."),
    Setting(field="near_cache_ttl", parse=_seconds(0.01, 60), shown_default="1",
            fallback_env=("CACHE_HOT_CACHE_TTL",),
            help="Seconds a copy is served at most, counted from its fetch and never past "
                 "the entry's own TTL; a write waits this long for a copy holder it cannot tell."),
    Setting(field="near_cache_threshold", parse=_int_in(1, 1_000_000), shown_default="4",
            fallback_env=("CACHE_HOT_CACHE_THRESHOLD",),
            help="GETs of a key within one second at a node that does not own it before "
                 "that node keeps a copy."),
    Setting(field="zone", parse=_zone, shown_default="(the task's availability zone)",
            help="This node's zone: a key's replicas go to distinct zones while there are "
                 "enough (README: Running across zones)."),
    Setting(field="cloudwatch_metrics", parse=_boolean, shown_default="false",
            help="Write CloudWatch metrics as Embedded Metric Format lines on stdout "
                 "(README: CloudWatch)."),
    Setting(field="cloudwatch_interval", parse=_seconds(1, 3600), shown_default="60",
            help="Seconds between two of those lines."),
    Setting(field="cloudwatch_namespace", parse=_namespace, shown_default="EcsKvCache",
            help="The CloudWatch namespace of those metrics."),
)  # fmt: skip

_FIELD_NAMES = {f.name for f in fields(Config)}
assert {s.field for s in SETTINGS} == _FIELD_NAMES, "every Config field needs a Setting"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; values stay raw strings until ``from_sources``."""
    for setting in SETTINGS:
        parser.add_argument(
            setting.flag,
            dest=setting.field,
            metavar=setting.field.upper(),
            default=None,
            help=f"{setting.help} [{setting.env}, default {setting.shown_default}]",
        )


def from_sources(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Config:
    """Build a Config: flag value, else ``CACHE_*`` variable, else default.

    Raises ``ConfigError`` naming the first bad setting and what it expects.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.field)
        source = setting.flag
        for name in setting.env_names:
            if raw is not None:
                break
            raw = environ.get(name)
            source = name
        if raw is None:
            continue
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            shown = f"{len(raw)} characters" if setting.secret else repr(raw)
            raise ConfigError(f"{source}: expected {exc}, got {shown}") from None
    config = Config(**values)
    _check_consistency(config)
    return config


def parse_args(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    parser: argparse.ArgumentParser | None = None,
) -> Config:
    """Parse ``serve`` flags and the environment into a Config.

    ``parser`` (default: a bare one) gets one flag per setting. Exits on a
    malformed command line, as argparse does; raises ``ConfigError``.
    """
    parser = parser or argparse.ArgumentParser(prog="python -m node")
    add_arguments(parser)
    return from_sources(vars(parser.parse_args(list(argv))), environ)


# CACHE_* variables the ECS management commands read (``python -m node ecs``),
# not a node: set in the same shell or task, they are no mistake.
MANAGEMENT_VARIABLES = (
    "CACHE_ECS_SUBNETS",
    "CACHE_ECS_SECURITY_GROUPS",
    "CACHE_ECS_ASSIGN_PUBLIC_IP",
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning line for each ``CACHE_*`` variable that no setting reads,
    naming the closest one that does: a misspelt variable (``CACHE_REPLICA=2``
    for ``CACHE_REPLICAS``) otherwise leaves the default in force without a
    word."""
    known = {name for s in SETTINGS for name in s.env_names if name.startswith("CACHE_")}
    known.update(MANAGEMENT_VARIABLES)
    lines = []
    for name in sorted(environ):
        if not name.startswith("CACHE_") or name in known:
            continue
        closest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        lines.append(f"{name} is not a setting of this node and is ignored{hint}")
    return lines


def _check_consistency(config: Config) -> None:
    if (config.auth_token or config.auth_token_file) and not config.peer_token:
        # Without a peer token a client token is a peer's too: any client
        # could forward, replicate, transfer entries and post leave notices.
        raise ConfigError(
            "CACHE_PEER_TOKEN is not set while CACHE_AUTH_TOKEN is: every client would be "
            "a node of the cluster; set CACHE_PEER_TOKEN to a second secret (README: Security)"
        )
    if config.discovery == "ecs" and not (config.ecs_cluster and config.ecs_service):
        raise ConfigError("CACHE_DISCOVERY=ecs needs CACHE_ECS_CLUSTER and CACHE_ECS_SERVICE")
    largest = max_entry_charge(key_bytes=config.max_key_bytes, value_bytes=config.max_value_bytes)
    if largest > config.max_bytes:
        raise ConfigError(
            f"CACHE_MAX_VALUE_BYTES ({config.max_value_bytes}) and CACHE_MAX_KEY_BYTES "
            f"({config.max_key_bytes}) allow entries of {largest} bytes, more than "
            f"CACHE_MAX_BYTES ({config.max_bytes})"
        )
