"""Where one artifact's seconds go: export, calibrate, quantize, verify.

Converters and exports add the time of the steps they can tell apart (`add("calibrate", s)`);
`edgekit.conversion.produce` opens one `Stopwatch` per artifact and files what remains of the
converter's time under "quantize". Kept per process: each format group's child converts one
artifact at a time.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STEPS = ("export", "calibrate", "quantize", "verify")
_current: list[dict[str, float]] = []


def add(step: str, seconds: float) -> None:
    if _current:
        _current[-1][step] = _current[-1].get(step, 0.0) + seconds


@contextmanager
def timed(step: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        add(step, time.perf_counter() - started)


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """The steps' seconds of the block, filled in as it runs."""
    steps: dict[str, float] = {}
    _current.append(steps)
    try:
        yield steps
    finally:
        _current.pop()
