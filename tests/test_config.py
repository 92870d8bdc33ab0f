"""Configuration: defaults, precedence, parsing, one-line errors, the CLI face."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.cache.store import Store
from node.config import (
    MANAGEMENT_VARIABLES,
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    parse_args,
    parse_member,
    parse_size,
    unknown_variables,
)
from node.errors import ValueTooLarge
from node.local_cluster import NodeProcess

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

# One valid raw value per setting, what it parses to, and any other variables
# it needs to be consistent. Every value differs from the default, so a test
# that reads it back can tell it was used.
SAMPLES: dict[str, tuple[str, Any, dict[str, str]]] = {
    "host": ("127.0.0.5", "127.0.0.5", {}),
    "port": ("7100", 7100, {}),
    "memcached_port": ("0", 0, {}),
    "memcached_flush_all": ("false", False, {}),
    "advertise": ("10.0.0.9:7000", "10.0.0.9:7000", {}),
    "peers": ("b:1,a:2", ("a:2", "b:1"), {}),
    "discovery": ("ECS", "ecs", {"CACHE_ECS_CLUSTER": "c", "CACHE_ECS_SERVICE": "s"}),
    "discovery_interval": ("10", 10.0, {}),
    "ecs_cluster": ("prod", "prod", {}),
    "ecs_service": ("cache", "cache", {}),
    "ecs_metadata_uri": ("http://169.254.170.2/v4/t", "http://169.254.170.2/v4/t", {}),
    "vnodes": ("64", 64, {}),
    "replicas": ("2", 2, {}),
    "max_bytes": ("64MiB", 64 * MiB, {}),
    "max_key_bytes": ("100", 100, {}),
    "max_value_bytes": ("512KiB", 512 * 1024, {}),
    "sweep_interval": ("2.5", 2.5, {}),
    "peer_timeout": ("3", 3.0, {}),
    "peer_connect_timeout": ("0.25", 0.25, {}),
    "peer_pool_size": ("8", 8, {}),
    "health_interval": ("0.2", 0.2, {}),
    "health_timeout": ("0.3", 0.3, {}),
    "health_failures": ("5", 5, {}),
    "breaker_failures": ("7", 7, {}),
    "breaker_cooldown": ("2.5", 2.5, {}),
    "drain_timeout": ("0", 0.0, {}),
    "auth_token": ("new, old", ("new", "old"), {"CACHE_PEER_TOKEN": "p"}),
    "auth_token_file": ("/run/secrets/cache", "/run/secrets/cache", {"CACHE_PEER_TOKEN": "p"}),
    "peer_token": ("p1,p0", ("p1", "p0"), {}),
    "max_connections": ("100", 100, {}),
    "max_connections_per_address": ("64", 64, {}),
    "idle_timeout": ("15", 15.0, {}),
    "head_timeout": ("2", 2.0, {}),
    "body_timeout": ("2", 2.0, {}),
    "write_timeout": ("3", 3.0, {}),
    "max_inflight_bytes": ("64MiB", 64 * MiB, {}),
    "log_level": ("debug", "DEBUG", {}),
    "log_format": ("JSON", "json", {}),
    "access_log": ("yes", True, {}),
    "request_metrics": ("off", False, {}),
    "zone": (" eu-west-1b ", "eu-west-1b", {}),
    "cloudwatch_metrics": ("yes", True, {}),
    "cloudwatch_interval": ("15", 15.0, {}),
    "cloudwatch_namespace": (" Caches/Prod ", "Caches/Prod", {}),
    "coalesce": ("off", False, {}),
    "near_cache": ("false", False, {}),
    "near_cache_bytes": ("4MiB", 4 * MiB, {}),
    "near_cache_ttl": ("0.5", 0.5, {}),
    "near_cache_threshold": ("16", 16, {}),
}
SETTING_IDS = [s.field for s in SETTINGS]


def test_no_flags_and_no_environment_give_the_defaults() -> None:
    assert parse_args([], {}) == Config()


def test_the_documented_defaults() -> None:
    config = Config()
    assert (config.host, config.port, config.peers, config.discovery) == (
        "0.0.0.0",
        7000,
        (),
        "static",
    )
    assert (config.vnodes, config.replicas) == (160, 1)
    assert (config.max_bytes, config.max_key_bytes, config.max_value_bytes) == (
        256 * MiB,
        250,
        1 * MiB,
    )
    assert config.log_level == "INFO"


# Settings whose shown default is a value (not a description such as "(none)").
VALUE_DEFAULTS = [
    s for s in SETTINGS if not s.shown_default.startswith("(") and s.field != "advertise"
]


@pytest.mark.parametrize("setting", VALUE_DEFAULTS, ids=[s.field for s in VALUE_DEFAULTS])
def test_the_shown_default_is_the_real_default(setting: Setting) -> None:
    assert setting.parse(setting.shown_default) == getattr(Config(), setting.field)


def test_every_config_field_has_a_sample_here() -> None:
    assert set(SAMPLES) == {s.field for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_every_setting_has_a_cache_variable_and_a_flag(setting: Setting) -> None:
    assert setting.env == "CACHE_" + setting.field.upper()
    assert setting.flag == "--" + setting.field.replace("_", "-")


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_every_setting_is_read_from_its_variable(setting: Setting) -> None:
    raw, expected, context = SAMPLES[setting.field]
    config = parse_args([], {**context, setting.env: raw})
    assert getattr(config, setting.field) == expected != getattr(Config(), setting.field)


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_every_setting_is_read_from_its_flag(setting: Setting) -> None:
    raw, expected, context = SAMPLES[setting.field]
    config = parse_args([setting.flag, raw], context)
    assert getattr(config, setting.field) == expected


def test_a_flag_beats_the_environment() -> None:
    assert parse_args(["--port", "7001"], {"CACHE_PORT": "7002"}).port == 7001


def test_the_environment_beats_the_default() -> None:
    assert parse_args([], {"CACHE_PORT": "7002"}).port == 7002


def test_variables_without_the_cache_prefix_are_ignored() -> None:
    assert parse_args([], {"PORT": "7002", "cache_port": "7003"}).port == 7000


def test_ecs_metadata_variable_is_a_fallback_for_the_metadata_uri() -> None:
    ecs = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/ecs"}
    assert parse_args([], ecs).ecs_metadata_uri == "http://169.254.170.2/v4/ecs"


def test_cache_metadata_variable_beats_the_ecs_fallback() -> None:
    environ = {
        "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/ecs",
        "CACHE_ECS_METADATA_URI": "http://127.0.0.1:9/v4/mine",
    }
    assert parse_args([], environ).ecs_metadata_uri == "http://127.0.0.1:9/v4/mine"


# -- sizes and members -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1048576", 1048576),
        ("256MiB", 256 * MiB),
        ("256mib", 256 * MiB),
        ("64mb", 64_000_000),
        ("64MB", 64_000_000),
        ("512KiB", 512 * 1024),
        ("2kb", 2000),
        ("1GiB", 1024**3),
        ("1gb", 10**9),
        ("10B", 10),
        (" 2 MiB ", 2 * MiB),
    ],
)
def test_sizes_parse_to_bytes(raw: str, expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "-1", "1.5MiB", "1TB", "MiB", "1 0MiB", "0x10"])
def test_bad_sizes_raise_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_size(raw)


def test_peers_are_sorted_and_deduplicated() -> None:
    raw = "10.0.0.3:7000, 10.0.0.1:7000,10.0.0.3:7000 10.0.0.2:7000,,"
    assert parse_args([], {"CACHE_PEERS": raw}).peers == (
        "10.0.0.1:7000",
        "10.0.0.2:7000",
        "10.0.0.3:7000",
    )


def test_empty_peers_give_no_peers() -> None:
    assert parse_args([], {"CACHE_PEERS": " "}).peers == ()


@pytest.mark.parametrize("raw", ["10.0.0.1:7000", "cache-a.local:1", "host:65535"])
def test_members_parse(raw: str) -> None:
    assert parse_member(f" {raw} ") == raw


@pytest.mark.parametrize(
    "raw", ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "host:port", ":7000", "a b:1", "h:123456"]
)
def test_bad_members_raise_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_member(raw)


# -- errors: one line that names the setting -------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        ([], {"CACHE_PORT": "abc"}, "CACHE_PORT"),
        (["--port", "70000"], {}, "--port"),
        (["--port", "0"], {}, "--port"),
        ([], {"CACHE_VNODES": "0"}, "CACHE_VNODES"),
        ([], {"CACHE_REPLICAS": "0"}, "CACHE_REPLICAS"),
        ([], {"CACHE_LOG_LEVEL": "loud"}, "CACHE_LOG_LEVEL"),
        ([], {"CACHE_MAX_BYTES": "lots"}, "CACHE_MAX_BYTES"),
        ([], {"CACHE_MAX_BYTES": "1KiB"}, "CACHE_MAX_BYTES"),
        ([], {"CACHE_PEERS": "10.0.0.1:7000,nope"}, "CACHE_PEERS"),
        ([], {"CACHE_ADVERTISE": "10.0.0.1"}, "CACHE_ADVERTISE"),
        ([], {"CACHE_ACCESS_LOG": "maybe"}, "CACHE_ACCESS_LOG"),
        ([], {"CACHE_PEER_TIMEOUT": "-1"}, "CACHE_PEER_TIMEOUT"),
        ([], {"CACHE_PEER_TIMEOUT": "nan"}, "CACHE_PEER_TIMEOUT"),
        ([], {"CACHE_DISCOVERY": "dns"}, "CACHE_DISCOVERY"),
        ([], {"CACHE_DISCOVERY": "ecs"}, "CACHE_DISCOVERY"),
        ([], {"CACHE_DISCOVERY": "ecs", "CACHE_ECS_CLUSTER": "c"}, "CACHE_DISCOVERY"),
        (["--max-bytes", "2MiB", "--max-value-bytes", "2MiB"], {}, "CACHE_MAX_VALUE_BYTES"),
        (["--max-bytes", "2MiB", "--max-value-bytes", "3MiB"], {}, "CACHE_MAX_VALUE_BYTES"),
    ],
)
def test_a_bad_value_raises_one_line_naming_the_setting(
    argv: list[str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_args(argv, environ)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_a_bad_flag_is_reported_even_when_the_variable_is_good() -> None:
    with pytest.raises(ConfigError, match="--vnodes"):
        parse_args(["--vnodes", "0"], {"CACHE_VNODES": "160"})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def _largest_accepted_value_limit(max_bytes: str) -> int:
    """The largest --max-value-bytes that config accepts beside ``max_bytes``."""
    low, high = 0, 1 << 40  # low is accepted (or 0), high is refused
    while high - low > 1:
        middle = (low + high) // 2
        try:
            parse_args(["--max-bytes", max_bytes, "--max-value-bytes", str(middle)], {})
        except ConfigError:
            high = middle
        else:
            low = middle
    return low


@pytest.mark.parametrize("key", ["k" * 250, "🚀" + "k" * 246], ids=["ascii", "non-ascii"])
def test_a_config_that_validates_can_store_its_largest_entry(key: str) -> None:
    # The tightest config that validates: the value limit as close to the
    # bound as config allows, a key at the default 250-byte limit, a TTL.
    assert len(key.encode()) == 250
    max_value = _largest_accepted_value_limit("1MiB")
    config = parse_args(["--max-bytes", "1MiB", "--max-value-bytes", str(max_value)], {})
    store = Store(max_bytes=config.max_bytes)
    try:
        store.set(key, b"x" * config.max_value_bytes, ttl=60)
    except ValueTooLarge as exc:
        pytest.fail(f"--max-value-bytes {max_value} is accepted but cannot be stored: {exc}")


# -- the command line ------------------------------------------------------------


def _run_node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_with_a_bad_value_exits_2_with_one_line() -> None:
    result = _run_node("--port", "abc")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--port" in lines[0]
    assert result.stdout == ""


def test_cli_help_lists_every_cache_variable() -> None:
    result = _run_node("--help")
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.env in result.stdout, setting.env
        assert setting.flag in result.stdout, setting.flag


def test_a_bad_token_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as error:
        parse_args([], {"CACHE_AUTH_TOKEN": "secret with spaces", "CACHE_PEER_TOKEN": "p"})
    assert "secret" not in str(error.value)
    assert "18 characters" in str(error.value)


def test_tokens_are_not_in_the_config_repr() -> None:
    assert "hunter2" not in repr(Config(auth_token=("hunter2",)))


# -- variables no setting reads


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    environ = {"CACHE_REPLICA": "2", "CACHE_NEAR_CACHES": "false", "HOME": "/root"}
    assert unknown_variables(environ) == [
        "CACHE_NEAR_CACHES is not a setting of this node and is ignored;"
        " did you mean CACHE_NEAR_CACHE?",
        "CACHE_REPLICA is not a setting of this node and is ignored; did you mean CACHE_REPLICAS?",
    ]


def test_every_setting_and_the_management_commands_variables_are_known() -> None:
    environ = {name: "x" for setting in SETTINGS for name in setting.env_names}
    environ.update(dict.fromkeys(MANAGEMENT_VARIABLES, "x"))
    assert unknown_variables(environ) == []
    # Every CACHE_ name the ECS commands read is one of them.
    source = (ROOT / "node" / "ecs_cli.py").read_text()
    named = set(re.findall(r"\bCACHE_[A-Z_]*[A-Z]\b", source))
    assert unknown_variables(dict.fromkeys(named, "x")) == []


def test_a_node_started_with_a_misspelt_variable_says_so_once(tmp_path: Path) -> None:
    log_path = tmp_path / "node.log"
    node = NodeProcess(
        host="127.0.0.1",
        port=_free_port(),
        memcached_port=0,
        env={"CACHE_REPLICA": "2"},
        log_path=str(log_path),
    )
    node.start()
    try:
        node.wait_alive()
    finally:
        node.stop()
    warnings = [line for line in log_path.read_text().splitlines() if "CACHE_REPLICA " in line]
    assert len(warnings) == 1 and "did you mean CACHE_REPLICAS?" in warnings[0], warnings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "client_tokens",
    [{"CACHE_AUTH_TOKEN": "clients"}, {"CACHE_AUTH_TOKEN_FILE": "/run/secrets/cache"}],
    ids=["variable", "file"],
)
def test_client_tokens_without_a_peer_token_stop_the_node_naming_it(
    client_tokens: dict[str, str],
) -> None:
    # Every client would be a node; one line says which setting is missing.
    completed = subprocess.run(
        [sys.executable, "-m", "node", "--port", "1"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **client_tokens},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("python -m node: error: CACHE_PEER_TOKEN is not set"), line
    assert "clients" not in line  # the token itself is never shown
    with_peers = {**client_tokens, "CACHE_PEER_TOKEN": "peers"}
    config = parse_args([], {**with_peers, "CACHE_AUTH_TOKEN_FILE": ""})
    assert config.peer_token == ("peers",)
