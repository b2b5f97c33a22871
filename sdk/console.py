"""Progress on stderr: a rich spinner on a terminal, plain lines elsewhere, nothing when quiet."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    def __init__(self, quiet: bool = False, stream=None, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose  # tools' own output streams to the terminal too (-v), besides the logs
        self._stream = stream
        self.live = not quiet and self.stream.isatty()

    @property
    def stream(self):
        """The given stream, else the terminal's stderr (also while tools' output is captured to a log)."""
        if self._stream is not None:
            return self._stream
        from edgekit.toollog import console

        return console()

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        """Show `message` while the block runs (long steps: conversions, calibration)."""
        if self.live:
            from rich.console import Console

            with Console(file=self.stream).status(message):
                yield
        else:
            yield  # non-terminals get one outcome line from the caller instead


SILENT = Progress(quiet=True)
