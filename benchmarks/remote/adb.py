"""adb transport on adbutils: the adb server's sync protocol for files, `shell` v2 for exit codes.

Stock Android has no Python: devices reached this way usually run a vendor benchmark binary
(LiteRT's benchmark_model) that edgekit pushes. Not exercised against a real phone here
(README: Benchmark on your devices); the tests cover the real adb server with no device.
"""
from __future__ import annotations

import socket
from pathlib import Path

from edgekit._deps import require
from edgekit.benchmarks.remote.transport import Completed, DeviceError, RunTimeout, Transport, Unreachable

DEFAULT_SERVER = "127.0.0.1:5037"


class ADBTransport(Transport):
    def __init__(self, device):
        adbutils = require("adbutils")
        self._errors = (adbutils.AdbError, adbutils.AdbTimeout, OSError, socket.timeout)
        self.name = device.name
        host, _, port = (device.adb_server or DEFAULT_SERVER).rpartition(":")
        self._server = f"{host}:{port}"
        # Checked here first: adbutils starts a local adb server on the default port when it cannot
        # connect, a daemon left running on the user's behalf (and the wrong one for another port).
        try:
            socket.create_connection((host, int(port)), timeout=device.connect_timeout).close()
        except OSError as exc:
            raise Unreachable(f"adb server {self._server} not reachable ({exc.strerror or exc}); "
                              "start it with `adb start-server`") from None
        client = adbutils.AdbClient(host=host, port=int(port), socket_timeout=device.connect_timeout)
        try:
            attached = [d.serial for d in client.device_list()]
        except self._errors as exc:
            raise Unreachable(f"adb server {self._server} not reachable ({exc}); start it with `adb start-server`") from None
        if device.serial and device.serial not in attached:
            raise Unreachable(f"adb: device {device.serial} not attached (adb server {self._server} lists: "
                              f"{', '.join(attached) or 'none'})")
        if not device.serial and len(attached) != 1:
            raise Unreachable(f"adb: {'no device attached' if not attached else 'several devices attached'} "
                              f"(adb server {self._server} lists: {', '.join(attached) or 'none'}); "
                              "plug one in and allow USB debugging, or set serial")
        self._device = client.device(device.serial or attached[0])
        self._where = f"adb {self._device.serial}"

    def push(self, local: Path, remote: str) -> None:
        try:
            self._device.sync.push(str(local), remote)
        except self._errors as exc:
            raise DeviceError(f"{self._where}: push {local.name} failed: {exc}") from None

    def pull(self, remote: str, local: Path) -> None:
        try:
            self._device.sync.pull(remote, str(local))
        except self._errors as exc:
            raise DeviceError(f"{self._where}: pull {remote} failed: {exc}") from None

    def _run(self, command: str, timeout: float) -> Completed:
        adbutils = require("adbutils")
        try:
            done = self._device.shell2(command, timeout=timeout, v2=True)
        except adbutils.AdbTimeout:
            raise RunTimeout(f"{self._where}: timed out after {timeout:g} s; the remote process group was killed") from None
        except self._errors as exc:
            raise DeviceError(f"{self._where}: connection lost mid-run: {exc}") from None
        stdout = getattr(done, "stdout", None)
        stderr = getattr(done, "stderr", "") or ""
        return Completed(done.returncode, stdout if stdout is not None else done.output, stderr)

    def close(self) -> None:
        self._device = None
