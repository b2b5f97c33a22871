"""One build at a time per output directory, and a publish step that an interrupt cannot split."""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import InputError

LOCK_FILE = ".edgekit.lock"


@contextmanager
def output_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory/.edgekit.lock`; a second build fails at once, naming it.

    flock locks die with their process, so a killed build never leaves a stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks here, builds are not serialized
        yield
        return
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / LOCK_FILE).open("a")  # "a": never truncates another build's file
    except OSError as exc:
        raise InputError(f"output directory {directory} is not writable: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError(f"{directory / LOCK_FILE}: another edgekit build is writing {directory}; "
                         "wait for it to finish (the lock is released when that process exits)") from None
    failed = True
    try:
        yield
        failed = False
    finally:
        if failed and created:  # a first build that failed leaves no trace
            (directory / LOCK_FILE).unlink(missing_ok=True)
            _rmdir_if_empty(directory)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _rmdir_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs (a few renames and the manifest write), then act on them.

    Ctrl-C during publishing would otherwise leave new artifacts beside the old manifest.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if signal.SIGINT in received:
        raise KeyboardInterrupt
    if received:
        os.kill(os.getpid(), received[0])
