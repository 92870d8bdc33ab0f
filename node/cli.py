"""Command line: ``python -m node [flags]`` serves; sub-commands do the rest.

    python -m node [--port 7000 ...]     run one node (flags or CACHE_* env)
    python -m node local [--nodes 3]     run a local cluster on 127.0.0.x
    python -m node ecs <command> ...     manage the cache on AWS ECS

This is the only module that configures logging and the only one that
reads ``os.environ`` (handing it to ``config``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from . import config as config_module
from .app import (
    CONNECTIONS,
    KEEPER,
    KV_DOOR,
    LEDGER,
    add_memcached_door,
    begin_gossip,
    create_app,
    drain,
    resolve_self_id,
    resolve_zone,
)
from .compiled import describe as describe_build
from .config import Config, ConfigError
from .core.bounds import ConnectionLedger
from .http.server import NodeRunner, max_request_line
from .logs import configure_logging
from .request_id import RequestIdFilter

__all__ = ["main"]

log = logging.getLogger("node")

_DESCRIPTION = """\
Run one cache node. Every flag can also be set with the CACHE_* variable
named in its help; a flag wins over the variable.

sub-commands:
  local   run a local cluster:        python -m node local --help
  ecs     manage the cache on ECS:    python -m node ecs --help
"""


def _serve_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m node",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "local":
        from .local_cluster import main as local_main

        return local_main(args[1:])
    if args and args[0] == "ecs":
        from .ecs_cli import main as ecs_main

        return ecs_main(args[1:], os.environ)
    if args and args[0] == "serve":
        args = args[1:]
    try:
        config = config_module.parse_args(args, os.environ, parser=_serve_parser())
    except ConfigError as exc:
        print(f"python -m node: error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config)
    for warning in config_module.unknown_variables(os.environ):
        log.warning(warning)
    _install_uvloop()
    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:
        return 0


async def serve(config: Config) -> int:
    """Serve until SIGTERM or SIGINT, then shut down cleanly. Returns the exit status."""
    self_id = await resolve_self_id(config)
    config = dataclasses.replace(config, zone=await resolve_zone(config))
    try:
        app = create_app(config, self_id=self_id)
    except OSError as exc:
        print(f"python -m node: error: CACHE_AUTH_TOKEN_FILE: {exc}", file=sys.stderr)
        return 2
    _fit_under_file_limit(app[LEDGER])
    runner = NodeRunner(
        app,
        # The route guard writes the access log (with request ids); aiohttp's own stays off.
        access_log=None,
        handle_signals=False,
        max_line_size=max_request_line(config.max_key_bytes),
        ledger=app[LEDGER],
        stats=app[CONNECTIONS],
        door=app[KV_DOOR],
        head_timeout=config.head_timeout,
        # Closes keep-alive connections idle between requests.
        keepalive_timeout=config.idle_timeout,
        # After the drain, open connections get this long to finish: drain
        # plus this stays below Fargate's 30 s stopTimeout.
        shutdown_timeout=5.0,
    )
    add_memcached_door(app, config)
    try:
        await runner.setup()
    except OSError as exc:
        print(
            f"python -m node: error: cannot listen on {config.host}:{config.memcached_port} "
            f"(memcached): {exc.strerror}",
            file=sys.stderr,
        )
        await runner.cleanup()
        return 1
    site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        print(
            f"python -m node: error: cannot listen on {config.host}:{config.port}: {exc.strerror}",
            file=sys.stderr,
        )
        await runner.cleanup()
        return 1
    log.info("node %s listening on %s:%d", self_id, config.host, config.port)
    log.info("%s", describe_build())
    begin_gossip(app)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # A task ECS no longer lists is being stopped: SIGTERM is on its way.
    app[KEEPER].on_removed = stopping.set
    await stopping.wait()
    log.info("node %s stopping: handing off entries (up to %gs)", self_id, config.drain_timeout)
    await drain(app, timeout=config.drain_timeout)
    await runner.cleanup()
    log.info("node %s stopped", self_id)
    return 0


def _fit_under_file_limit(ledger: ConnectionLedger) -> None:
    """Lower the connection cap of both doors below the process's file
    descriptor limit (with room for the connections to peers, logs and the
    store's files) so that a flood meets the node's refusal, never a failed
    accept() with nothing logged."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or ledger.limit <= soft - _SPARE_DESCRIPTORS:
        return
    lowered = max(16, soft - _SPARE_DESCRIPTORS)
    log.warning(
        "CACHE_MAX_CONNECTIONS=%d is above what %d file descriptors allow: using %d "
        "for both doors together (raise the task's nofile ulimit to use more)",
        ledger.limit,
        soft,
        lowered,
    )
    ledger.lower(lowered)


# Descriptors kept out of the connection cap: the connections this node
# opens to its peers, its log and listening sockets.
_SPARE_DESCRIPTORS = 128


def _configure_logging(config: Config) -> None:
    configure_logging(level=config.log_level, json_lines=config.log_format == "json")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional on platforms without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
