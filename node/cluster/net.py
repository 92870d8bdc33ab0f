"""This machine's private IP, and whether a node answers its health check.

``get_private_ip`` tries, in order:

1. the ECS task metadata endpoint v4 (``{metadata_uri}/task``): the first
   ``Containers[].Networks[].IPv4Addresses[0]``. The URI is the argument, or
   else ``ECS_CONTAINER_METADATA_URI_V4``, which ECS sets in every container;
2. the UDP-socket method: ``connect()`` a UDP socket to ``udp_probe`` and read
   the source address the kernel picked; no packet is sent;
3. the fallback ``"127.0.0.1"`` (logged at WARNING), so a node can always
   start; peers elsewhere will not reach it under that id.

Neither function raises for network trouble: they return a fallback or False.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

__all__ = ["DEFAULT_UDP_PROBE", "FALLBACK_IP", "check_alive", "get_private_ip"]

log = logging.getLogger(__name__)

FALLBACK_IP = "127.0.0.1"

# connect() on a UDP socket only asks the kernel for a route and binds the
# source address; nothing goes on the wire. Any address routed through the
# private interface works; this one is private (RFC 1918) and never a host.
DEFAULT_UDP_PROBE = "10.255.255.255"

# Set by ECS in every container of a task (agent 1.39+, every Fargate platform).
METADATA_URI_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"


async def get_private_ip(
    *,
    metadata_uri: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 2.0,
    udp_probe: str | None = DEFAULT_UDP_PROBE,
) -> str:
    """This machine's private IPv4 address as a string; never raises.

    ``metadata_uri`` is the task metadata endpoint v4. None (the default)
    means ``ECS_CONTAINER_METADATA_URI_V4`` from ``environ``, or from
    ``os.environ`` when ``environ`` is None: called with no argument inside a
    task, this gives the task's IP, as every ECS tool does. An explicit URI
    wins over the variable, and ``""`` skips the endpoint.

    Why read the environment here when only ``config`` should: this is the
    fallback for callers outside the node (scripts, the REPL, other tools).
    The node passes the URI that ``config`` read (``CACHE_ECS_METADATA_URI``,
    else the same ECS variable), ``""`` included, so it never gets here.

    ``timeout`` bounds the metadata request, in seconds. ``udp_probe`` must be
    an IPv4 literal (no name is ever resolved); None skips the UDP method. See
    the module docstring for the order and fallback.
    """
    if metadata_uri is None:
        metadata_uri = (os.environ if environ is None else environ).get(METADATA_URI_VARIABLE)
    if metadata_uri:
        try:
            return await _ip_from_task_metadata(metadata_uri, timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning(
                "task metadata at %s gave no IP (%s); trying the UDP method", metadata_uri, exc
            )
    if udp_probe is not None:
        try:
            return _ip_from_udp_route(udp_probe)
        except (OSError, ValueError) as exc:
            log.warning("UDP-socket method gave no IP (%s)", exc)
    log.warning("no private IP found; using %s", FALLBACK_IP)
    return FALLBACK_IP


async def _ip_from_task_metadata(metadata_uri: str, timeout: float) -> str:
    """GET ``{metadata_uri}/task``; raises ValueError if the document has no IPv4."""
    url = metadata_uri.rstrip("/") + "/task"
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url) as response,
    ):
        if response.status != 200:
            raise ValueError(f"status {response.status}")
        document: Any = orjson.loads(await response.read())
    try:
        for container in document.get("Containers") or ():
            for network in container.get("Networks") or ():
                addresses = network.get("IPv4Addresses") or ()
                if addresses:
                    return str(ipaddress.IPv4Address(addresses[0]))
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"unexpected task metadata shape: {exc}") from exc
    raise ValueError("no Containers[].Networks[].IPv4Addresses in the task metadata")


def _ip_from_udp_route(probe: str) -> str:
    """The source address the kernel would use to reach ``probe``; sends nothing."""
    target = str(ipaddress.IPv4Address(probe))  # a literal only: no DNS lookup
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((target, 9))  # port 9 (discard); irrelevant, nothing is sent
        address = str(sock.getsockname()[0])
    if address == "0.0.0.0":
        raise OSError("the kernel picked no source address")
    return address


async def check_alive(ip: str, port: int = 7000, *, timeout: float = 1.0) -> bool:
    """True if ``GET http://{ip}:{port}/check-alive`` answers 200 within ``timeout`` s.

    Any other status, a refused connection or a timeout gives False.
    """
    host = f"[{ip}]" if ":" in ip else ip
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(f"http://{host}:{port}/check-alive", allow_redirects=False) as response,
        ):
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.debug("check-alive %s:%d failed: %s", ip, port, exc)
        return False
