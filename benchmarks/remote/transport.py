"""What every transport gives: push, run, pull, close — and what is built once on top of them.

A transport moves files and runs argv lists (never a shell string built from user input:
arguments are quoted once, here). On top of the four primitives this module adds the
content-addressed push (a file already on the device under its sha256 is not sent again)
and the guarded run: the command runs in its own session with its process-group id in a
pid file, so a timeout kills the whole group and nothing is left running on the device.
"""
from __future__ import annotations

import hashlib
import shlex
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EXIT_FAILED, EdgekitError


class DeviceError(EdgekitError):
    """One device failed (unreachable, refused, timed out, ...): its own error row, exit 1."""

    exit_code = EXIT_FAILED


class Unreachable(DeviceError):
    """No connection at all: host down, port closed, adb server or device absent."""


class NotAuthenticated(DeviceError):
    """Reached, but the login failed or the host's key is not the one trusted."""


class RunTimeout(DeviceError):
    """A command ran past its timeout on the device (and was killed there)."""


@dataclass
class Completed:
    status: int
    stdout: str
    stderr: str


class Transport(ABC):
    """A connection to one device. Implementations raise DeviceError with one line that says what failed."""

    name: str = ""
    last_push_sent: bool = False

    @abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to `remote` (its folder exists)."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy a device file to `local`."""

    @abstractmethod
    def _run(self, command: str, timeout: float) -> Completed:
        """Run a POSIX shell command line; raise RunTimeout past `timeout`, DeviceError if the link drops."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; safe to call twice."""

    def run(self, argv: list[str], timeout: float) -> Completed:
        return self._run(shlex.join(argv), timeout)

    def shell(self, script: str, timeout: float = 30.0) -> Completed:
        """A fixed script of edgekit's own (probes, cleanup), run by `sh -c`."""
        return self._run(shlex.join(["sh", "-c", script]), timeout)

    def run_guarded(self, argv: list[str], timeout: float, workdir: str) -> Completed:
        """Run argv in a new session; past `timeout`, kill its whole process group on the device."""
        pidfile = f"{workdir}/run/{uuid.uuid4().hex}.pid"
        # setsid -w: a new session (and process group) led by the shell, which records its pid
        # and execs the command; -w waits so the exit status is the command's.
        wrapped = ["setsid", "-w", "sh", "-c", 'echo $$ > "$0"; exec "$@"', pidfile, *argv]
        try:
            return self.run(wrapped, timeout)
        except RunTimeout:
            self.kill_group(pidfile)
            raise
        finally:
            self._forget(pidfile)

    def kill_group(self, pidfile: str) -> None:
        """SIGKILL the process group whose leader's pid is in `pidfile` (a fresh command: the old channel is gone)."""
        quoted = shlex.quote(pidfile)
        # `kill -9 -PGID`, not `kill -KILL -- -PGID`: dash (Debian's sh) rejects the `--` and kills nothing.
        self.shell(f'[ -s {quoted} ] && kill -9 -"$(cat {quoted})" 2>/dev/null; rm -f {quoted}; true', 15.0)

    def _forget(self, pidfile: str) -> None:
        try:
            self.shell(f"rm -f {shlex.quote(pidfile)}", 15.0)
        except DeviceError:
            pass  # the link is gone; the report already says so

    def push_addressed(self, files: list[Path], workdir: str) -> str:
        """Push files into WORKDIR/blobs/<sha256 of their contents>/ unless already there; that folder.

        `self.last_push_sent` says whether anything was sent.

        A `.complete` marker is written last, so an interrupted push is never taken as present.
        """
        folder = addressed_folder(files, workdir)
        quoted = shlex.quote(folder)
        present = self.shell(f"[ -f {quoted}/.complete ] && echo present || mkdir -p {quoted}").stdout
        self.last_push_sent = "present" not in present
        if not self.last_push_sent:
            return folder
        for path in files:
            try:
                self.push(path, f"{folder}/{path.name}.part")
            except DeviceError as exc:
                self._explain_full_disk(folder, path, exc)
                raise
            self.shell(f"mv -f {quoted}/{shlex.quote(path.name)}.part {quoted}/{shlex.quote(path.name)}")
        self.shell(f"touch {quoted}/.complete")
        return folder

    def _explain_full_disk(self, folder: str, path: Path, exc: DeviceError) -> None:
        """A failed push on a full disk says so plainly (SFTP servers often report only 'Failure')."""
        try:
            done = self.shell(f"rm -f {shlex.quote(folder)}/*.part; df -Pk {shlex.quote(folder)} | tail -1")
            free_kb = int(done.stdout.split()[3])
        except (DeviceError, ValueError, IndexError):
            return
        needed_kb = path.stat().st_size // 1024 + 1
        if free_kb < needed_kb:
            raise DeviceError(f"disk full on the device: {free_kb} KB free under {folder.rsplit('/blobs/', 1)[0]}, "
                              f"{path.name} needs {needed_kb} KB") from None

    def prepare(self, workdir: str) -> None:
        quoted = shlex.quote(workdir)
        done = self.shell(f"mkdir -p {quoted}/blobs {quoted}/run {quoted}/jobs && echo ok")
        if "ok" not in done.stdout:
            raise DeviceError(f"cannot create the work directory {workdir}: {(done.stderr or done.stdout).strip()[:200]}")

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def addressed_folder(files: list[Path], workdir: str) -> str:
    """Where push_addressed keeps these files on the device: named by the sha256 of their names and contents."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + bytes.fromhex(_sha256(path)))
    return f"{workdir}/blobs/{digest.hexdigest()}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_transport(device) -> Transport:
    """The transport a Device names (its library imported here, or a message naming the extra)."""
    if device.transport.value == "ssh":
        from edgekit.benchmarks.remote.ssh import SSHTransport

        return SSHTransport(device)
    from edgekit.benchmarks.remote.adb import ADBTransport

    return ADBTransport(device)
