"""The caller's request id, followed across nodes and into every log line.

A leaf module: the HTTP door sets ``REQUEST_ID`` for the life of a request,
the forwarder sends it on with every peer call, and ``RequestIdFilter`` puts
it on every log record made meanwhile.
"""

from __future__ import annotations

import contextvars
import logging

from multidict import istr

__all__ = ["MAX_REQUEST_ID", "REQUEST_ID", "REQUEST_ID_HEADER", "RequestIdFilter"]

# An istr: multidict looks it up in a request's headers without case-folding
# it again each time (about 60 ns, on every request).
REQUEST_ID_HEADER = istr("X-Request-Id")
# Longer ids are cut: a caller must not make every log line huge.
MAX_REQUEST_ID = 128
# The caller's request id, for the life of the request's task (None: none sent).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record made while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True
