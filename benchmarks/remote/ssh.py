"""SSH transport on asyncssh: real command timeouts, SFTP, host keys checked as the device table says.

asyncssh is asynchronous; edgekit's bench is not. The transport owns a private event loop
and runs each operation to completion on it, so callers see plain blocking calls.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from edgekit._deps import require
from edgekit.benchmarks.remote.transport import (Completed, DeviceError, NotAuthenticated, RunTimeout, Transport,
                                                 Unreachable)


class SSHTransport(Transport):
    def __init__(self, device):
        self.device = device
        self.name = device.name
        self._where = f"{device.user + '@' if device.user else ''}{device.host}:{device.port}"
        self._asyncssh = require("asyncssh")
        self._loop = asyncio.new_event_loop()
        self._conn = self._sftp = None
        try:
            self._conn = self._call(self._connect())
            self._sftp = self._call(self._conn.start_sftp_client())
        except BaseException:
            self.close()
            raise

    def _call(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    async def _connect(self):
        asyncssh, device = self._asyncssh, self.device
        known_hosts, record = self._known_hosts()
        options = {"host": device.host, "port": device.port, "username": device.user, "known_hosts": known_hosts,
                   "connect_timeout": device.connect_timeout, "login_timeout": device.connect_timeout}
        if device.key:
            options.update(client_keys=[device.key], agent_path=None)
        try:
            conn = await asyncssh.connect(**options)
        except asyncssh.HostKeyNotVerifiable as exc:
            where = device.known_hosts or "~/.ssh/known_hosts"
            raise NotAuthenticated(f"host key of {self._where} does not match {where} ({exc.reason}); if the device was "
                              f"reinstalled, remove its old line with `ssh-keygen -R` and connect again") from None
        except asyncssh.PermissionDenied:
            key = f"key {device.key}" if device.key else "the agent's and ~/.ssh keys"
            raise NotAuthenticated(f"authentication refused by {self._where} with {key}") from None
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
            else:
                reason = getattr(exc, "reason", "") or str(exc) or "connection timed out"
            raise Unreachable(f"unreachable: {self._where}: {reason or type(exc).__name__}") from None
        if record is not None:
            record(conn.get_server_host_key())
        return conn

    def _known_hosts(self):
        """(asyncssh's known_hosts argument, a callback that records a new key or None)."""
        policy = self.device.host_key_policy.value
        if policy == "off":
            return None, None
        path = Path(self.device.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
        if policy == "strict":
            if not path.is_file():
                raise NotAuthenticated(f"{self._where}: no known_hosts file {path} (host_key_policy = 'strict'); "
                                  f"add the host's key with `ssh-keyscan -p {self.device.port} {self.device.host}`")
            return str(path), None
        if path.is_file():
            known = self._asyncssh.read_known_hosts(str(path)).match(self.device.host, "", self.device.port)
            if any(known[:2]):
                return str(path), None  # known: a changed key is refused, as under 'strict'
        host = self.device.host if self.device.port == 22 else f"[{self.device.host}]:{self.device.port}"

        def record(key) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write(f"{host} {key.export_public_key('openssh').decode().strip()}\n")

        return None, record

    def push(self, local: Path, remote: str) -> None:
        self._io(self._sftp.put(str(local), remote), f"push {local.name}")

    def pull(self, remote: str, local: Path) -> None:
        self._io(self._sftp.get(remote, str(local)), f"pull {remote}")

    def _io(self, coroutine, what: str):
        try:
            return self._call(coroutine)
        except self._asyncssh.SFTPConnectionLost as exc:
            raise DeviceError(f"{self._where}: connection lost during {what}: {exc.reason}") from None
        except self._asyncssh.SFTPError as exc:
            reason = exc.reason
            if "space" in reason.lower() or exc.code == 4 and "failure" in reason.lower():
                reason += " (is the device's disk full? `edgekit devices` shows free space)"
            raise DeviceError(f"{self._where}: {what} failed: {reason}") from None
        except (OSError, self._asyncssh.Error) as exc:
            raise DeviceError(f"{self._where}: connection lost during {what}: {exc}") from None

    def _run(self, command: str, timeout: float) -> Completed:
        try:
            done = self._call(self._conn.run(command, timeout=timeout, check=False))
        except self._asyncssh.TimeoutError:
            raise RunTimeout(f"{self._where}: timed out after {timeout:g} s; the remote process group was killed") from None
        except (OSError, self._asyncssh.Error) as exc:
            raise DeviceError(f"{self._where}: connection lost mid-run: {exc or type(exc).__name__}") from None
        status = done.exit_status if done.exit_status is not None else 255
        if done.exit_signal:
            raise DeviceError(f"{self._where}: connection lost mid-run (the command was ended by {done.exit_signal[0]})")
        return Completed(status, done.stdout or "", done.stderr or "")

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            try:
                self._call(self._conn.wait_closed())
            except Exception:
                pass  # already gone
            self._conn = None
        if not self._loop.is_closed():
            self._loop.close()
