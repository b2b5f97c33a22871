"""Rich consoles that fit where the output lands: a terminal, or a CI log and a file.

On a terminal rich wraps tables to the window, which is what a reader there wants. In a
log or a file rich would assume 80 columns and fold every cell (a 12-artifact bench table
became ~150 lines of fragments), so there each row is printed on one line, as wide as its
content needs; `COLUMNS`, when set, still decides the width. Colour follows rich's rules:
none off a terminal, none with `NO_COLOR` set (https://no-color.org), forced by
`FORCE_COLOR`. rich is imported here, when a table is printed, never at CLI start.
"""
from __future__ import annotations

import os
import sys
from typing import IO, Any

# Wide enough for any table edgekit prints; rich pads nothing beyond a table's own width.
LOG_WIDTH = 10_000


def rich_console(stderr: bool = False, file: IO[str] | None = None) -> Any:
    """A rich Console on `file` (default stdout, or stderr): terminal width, else unwrapped."""
    from rich.console import Console

    stream = file or (sys.stderr if stderr else sys.stdout)
    if _is_terminal(stream) or os.environ.get("COLUMNS", "").strip().isdigit():
        return Console(file=stream)  # rich reads the window size, or COLUMNS
    return Console(file=stream, width=LOG_WIDTH)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False
