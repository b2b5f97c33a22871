"""Console output that is a pure function of its inputs, rendered once per terminal setting.

`edgekit targets` prints the same table for the same profiles on the same terminal. Rendering
it means importing rich (~40 ms) and laying the table out (~25 ms): most of what was left of
the command's start after the listing itself was cached (targets/listing.py; issue 12 asks for
0.15 s). So the text rich produced is kept in the user's cache under a digest of the content,
the code that renders it, the installed rich and everything rich reads to choose a width, a
colour system and box characters; a hit writes those bytes without importing rich. Another
window size, NO_COLOR, an edited module or another rich is another key and renders afresh. A
cache that cannot be read or written is ignored.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

# What rich's Console consults when it picks width, height, colour and legacy modes.
_ENVIRONMENT = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM", "COLORTERM", "TTY_COMPATIBLE",
                "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def print_cached(name: str, content: str, code: list[str], render: Callable[[], str], stream: IO[str] | None = None) -> None:
    """Write render()'s text to `stream` (stdout), from the cache when nothing it depends on changed:
    `content` (what is shown), the `code` modules that render it, rich, and the terminal."""
    from edgekit.targets.listing import cache_dir

    stream = stream or sys.stdout
    path = cache_dir() / f"{name}-{_key(content, code, stream)}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        text = render()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(text, encoding="utf-8")
            scratch.replace(path)  # readers see the old file or the whole new one
        except OSError:
            pass
    stream.write(text)
    stream.flush()


def _key(content: str, code: list[str], stream: IO[str]) -> str:
    sha = hashlib.sha256(content.encode())
    for module in code:  # their source, found without importing them (they import rich)
        sha.update(module.encode() + b"\0" + Path(importlib.util.find_spec(module).origin).read_bytes() + b"\0")
    spec = importlib.util.find_spec("rich")
    if spec is not None and spec.origin:  # another rich version may lay the table out differently
        stat = Path(spec.origin).stat()
        sha.update(f"{spec.origin}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    terminal = _terminal_size(stream)
    sha.update(repr((terminal, getattr(stream, "encoding", None),
                     [(key, os.environ.get(key)) for key in _ENVIRONMENT])).encode())
    return sha.hexdigest()[:20]


def _terminal_size(stream: IO[str]) -> tuple[int, int] | None:
    """The window's size when `stream` is a terminal, else None (rich then renders for a log)."""
    try:
        if not stream.isatty():
            return None
        size = os.get_terminal_size(stream.fileno())
        return size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        return None
