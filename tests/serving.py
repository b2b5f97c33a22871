"""A real `edgekit serve` in a subprocess on 127.0.0.1, for tests and the load benchmark: started, waited for, stopped."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

_STARTED = re.compile(r"on http://127\.0\.0\.1:(\d+) .*admin on http://127\.0\.0\.1:(\d+)")


class Server:
    """`python -m edgekit serve ARGS --port 0`; `url` and `admin` once it prints its start line."""

    def __init__(self, args: list, log: Path, timeout: float = 120.0):
        self.log = log
        self.handle = log.open("wb")
        command = [sys.executable, "-m", "edgekit", "serve", *map(str, args), "--port", "0"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.handle,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while True:
            match = _STARTED.search(self.stderr())
            if match:
                self.url, self.admin = (f"http://127.0.0.1:{p}" for p in match.groups())
                self.admin_port = int(match[2])
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"edgekit serve did not start:\n{self.stderr()[-3000:]}")
            time.sleep(0.1)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.handle.close()
        return self.process.returncode
