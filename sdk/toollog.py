"""Third-party tools' output goes to a log file, captured at the file-descriptor level.

TensorFlow's C++ logging, the TFLite converter's `fully_quantize: 0 ...` lines, absl and
oneDNN banners, LiteRT's "Created TensorFlow Lite XNNPACK delegate" and NNCF's progress
bars are written straight to fds 1 and 2 by native code, past any `sys.stderr` object:
only `os.dup2` onto those fds catches them. `capture(path)` points fds 1 and 2 (and
`sys.stdout`/`sys.stderr`, for callers that replaced them) at the log for the block;
`tee=True` (`-v`) copies everything to the terminal as well. edgekit's own lines keep
reaching the terminal through `console()`.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

_terminal: list[io.TextIOBase] = []  # the original stderr while a capture is active (innermost last)

# A child started by `popen_logged(..., terminal_channel=True)` gets a second pipe, copied to the
# terminal only, and its fd number in this variable. A `capture(tee=True)` in that child writes the
# log itself and must show the bytes without sending them through its stdout, which the parent logs
# again (every tool line twice in the log, and two copies interleaved mid-line under load).
TERMINAL_FD_VARIABLE = "EDGEKIT_TERMINAL_FD"
_terminal_channel: list[int] = []


def adopt_terminal_channel() -> None:
    """In a child of `popen_logged(..., terminal_channel=True)`: tee captures to the parent's terminal
    channel. The variable is removed so that this process's own children do not take the number for
    a descriptor they never inherited."""
    value = os.environ.pop(TERMINAL_FD_VARIABLE, None)
    if value and value.isdigit():
        with contextlib.suppress(OSError):
            os.fstat(int(value))
            _terminal_channel[:] = [int(value)]


def console() -> io.TextIOBase:
    """Where edgekit's own lines go: the terminal's stderr, even inside a capture."""
    return _terminal[-1] if _terminal else sys.stderr


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def capture(path: str | Path, *, tee: bool = False) -> Iterator[Path]:
    """Send everything written to fds 1 and 2 during the block to `path` (appended)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    copier = None
    if tee:
        read_end, write_end = os.pipe()
        shown = _terminal_channel[0] if _terminal_channel else saved_err
        copier = threading.Thread(target=_copy, args=(read_end, log, shown), daemon=True)
        copier.start()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
    else:
        os.dup2(log, 1)
        os.dup2(log, 2)
    previous = sys.stderr
    if _writes_to_fd2(previous):
        terminal = os.fdopen(os.dup(saved_err), "w", buffering=1, closefd=True)
    else:  # a Python-level stream (a test runner's buffer): dup2 does not touch it
        terminal = None
    _terminal.append(terminal or previous)
    python_stream = os.fdopen(os.dup(2), "w", buffering=1, closefd=True)
    try:
        with contextlib.redirect_stdout(python_stream), contextlib.redirect_stderr(python_stream):
            yield path
    finally:
        _flush()
        python_stream.close()
        _terminal.pop()
        if terminal is not None:
            terminal.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        if copier is not None:
            copier.join(timeout=10)  # fds 1/2 no longer hold the pipe: the copier reads to EOF
        for fd in (saved_out, saved_err, log):
            os.close(fd)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _copy(read_end: int, log: int, terminal: int) -> None:
    with contextlib.suppress(OSError):
        while chunk := os.read(read_end, 65536):
            os.write(log, chunk)
            with contextlib.suppress(OSError):
                os.write(terminal, chunk)
    os.close(read_end)


def popen_logged(command: list[str], log: Path, *, tee: bool, env: dict[str, str] | None = None,
                 new_session: bool = False, terminal_channel: bool = False,
                 ) -> tuple[subprocess.Popen, threading.Thread | None]:
    """Start `command` with its stdout and stderr appended to `log` (and to the terminal with `tee`).

    `terminal_channel` (with `tee`): the child also gets a pipe that reaches the terminal only, for
    what it logs itself (see `adopt_terminal_channel`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")
    if not tee:
        try:
            return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=new_session), None
        finally:
            handle.close()
    channel = os.pipe() if terminal_channel else None
    if channel is not None:
        env = {**(os.environ if env is None else env), TERMINAL_FD_VARIABLE: str(channel[1])}
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=new_session,
                                   pass_fds=(channel[1],) if channel else ())
    finally:
        if channel is not None:
            os.close(channel[1])  # the child holds the write end: EOF when it (and its heirs) exit
    terminal = console()
    # The child's bytes go to the terminal's fd in one write each, not through the text stream the
    # main thread prints edgekit's lines on: two threads writing one TextIOWrapper can lose lines,
    # and the capture that made that stream may close it while the child still prints.
    terminal_fd = _dup_fd(terminal)

    lock = threading.Lock()  # the two pipes' chunks reach the terminal whole, one at a time

    def show(chunk: bytes) -> None:
        with lock, contextlib.suppress(Exception):
            if terminal_fd is not None:
                os.write(terminal_fd, chunk)
            else:  # a Python-level stream (a test runner's buffer)
                terminal.write(chunk.decode(errors="replace"))
                terminal.flush()

    def show_channel() -> None:
        with open(channel[0], "rb", buffering=0) as pipe:
            for chunk in iter(lambda: pipe.read(65536), b""):
                show(chunk)

    def copy() -> None:
        shown = threading.Thread(target=show_channel, daemon=True) if channel else None
        if shown is not None:
            shown.start()
        try:
            with handle:
                for chunk in iter(lambda: process.stdout.read1(65536), b""):
                    handle.write(chunk)
                    handle.flush()
                    show(chunk)
            if shown is not None:
                shown.join(timeout=10)
        finally:
            if terminal_fd is not None:
                os.close(terminal_fd)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    return process, copier


def _dup_fd(stream) -> int | None:
    """A descriptor of its own onto `stream`'s file, flushed first; None for a stream without one."""
    try:
        stream.flush()
        return os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return None


def tail(path: Path, lines: int = 40) -> list[str]:
    """The last non-empty lines of a log, for a one-line reason when a tool crashed."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def quiet_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for tool subprocesses: TF's C++ INFO lines off, no telemetry (they still land in the log)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return env
