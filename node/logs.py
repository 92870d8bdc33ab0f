"""Log output: plain text for a terminal, JSON lines for CloudWatch.

JSON lines carry ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``
and, when set on the record (``logging``'s ``extra=``), ``node`` and
``request_id``; an exception adds ``exception`` with the formatted traceback.
One object per line, so CloudWatch Logs Insights can query the fields.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

__all__ = ["JsonLinesFormatter", "configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes callers may attach with extra= that JSON lines pass through.
_EXTRA_FIELDS = ("node", "request_id", "peer", "method", "path", "status", "seconds")


class JsonLinesFormatter(logging.Formatter):
    def __init__(self, *, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node is not None:
            line["node"] = self.node
        for name in _EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(*, level: str, json_lines: bool, node: str | None = None) -> None:
    """Send every log record to stderr, as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter(node=node) if json_lines else logging.Formatter(_TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
