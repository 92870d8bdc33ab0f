"""Report sections, rendered for the console and for Markdown.

The report, the ring benchmark and the memory comparison all describe their
results as the same kind of blocks; this is the one place that knows how
to print them either way. A block is Markdown text (headings and bullets
are translated for the console) or a ``Table``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["Block", "Table", "cell", "render", "table"]

# Headers and rows of cells.
Table = tuple[Sequence[str], Sequence[Sequence[str]]]
Block = str | Table


def table(columns: Sequence[tuple[str, Callable[[Any], str]]], items: Iterable[Any]) -> Table:
    """A row per item, a cell per (header, cell of an item) column."""
    return [header for header, _ in columns], [
        [cell(item) for _, cell in columns] for item in items
    ]


def render(blocks: Iterable[Block], *, markdown: bool) -> str:
    """The blocks, a blank line apart. On the console a heading loses its
    marks (a third-level one reads ``== title``), a bullet is indented and
    a table has padded columns."""
    parts = []
    for block in blocks:
        if isinstance(block, tuple):
            parts.append((_markdown_table if markdown else _plain_table)(*block))
        elif markdown:
            parts.append(block)
        else:
            plain = re.sub(r"^### ", "== ", block, flags=re.MULTILINE)
            plain = re.sub(r"^#+ ", "", plain, flags=re.MULTILINE)
            parts.append(re.sub(r"^- ", "  - ", plain, flags=re.MULTILINE))
    return "\n\n".join(parts) + "\n"


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the headers."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(name: str, spec: str = "") -> Callable[[dict[str, Any]], str]:
    """A column's cell: the item's ``name`` formatted with ``spec``."""
    return lambda item: format(item[name], spec)
