"""A foreign peer: a member that speaks the cluster's gossip and nothing else.

``StandInPeer`` listens on its own loopback address like a node. It answers
``POST /internal/gossip`` the way a member does (it echoes the sender's
table with its own record added, on the sender's ring), so nodes that list
it take it onto their rings and route its keys to it; every other request
gets what a web server that is not a cache node would send: ``500`` with an
HTML page. That is a peer "answering something this node cannot use", with
none of our own code replaced.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import orjson

from node.peers.protocol import GOSSIP_PATH

__all__ = ["ERROR_PAGE", "StandInPeer"]

ERROR_PAGE = b"<html><body><h1>500 Internal Server Error</h1></body></html>"


class StandInPeer:
    """A stand-in member at ``host:port``, served from a thread; use as a context manager."""

    def __init__(self, host: str, port: int = 7000) -> None:
        self.member = f"{host}:{port}"
        # Like a node's: its start time in milliseconds outranks older records.
        self.incarnation = time.time_ns() // 1_000_000
        self.requests: list[tuple[str, str]] = []  # (method, path) of every non-gossip request
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandInPeer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def gossip_answer(self, body: bytes) -> bytes:
        """The answer to a member's gossip: its table and this member's record,
        on its ring (so it agrees with the sender and the sender gets ready).
        A record that says this member is not alive is refuted as a member
        does: with a higher incarnation."""
        message = orjson.loads(body)
        members = dict(message["members"])
        heard = members.get(self.member)
        with self._lock:
            if heard is not None and heard[1] != "alive" and heard[0] >= self.incarnation:
                self.incarnation = heard[0] + 1
            members[self.member] = [self.incarnation, "alive"]
        return orjson.dumps(
            {
                "from": self.member,
                "members": members,
                "ring": message["ring"],
                "settled": message["settled"],
                "ready": True,
            }
        )

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


def _handler_for(peer: StandInPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the nodes' transport expects

        def log_message(self, format: str, *args: object) -> None:
            return None  # quiet: the test's output is for the test

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            body = self._body()
            if self.command == "POST" and self.path == GOSSIP_PATH:
                self._answer(200, "application/json", peer.gossip_answer(body))
                return
            peer.record(self.command, self.path)
            self._answer(500, "text/html", ERROR_PAGE)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _serve

    return Handler
