"""A real multi-node Ray cluster on this host for the cluster tests: a head and worker nodes, each a
`ray start --block` process group the fixture owns, so stopping (or killing) one node touches
no other Ray on the machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.devicelab import free_port

BIN = Path(sys.executable).parent
SMALL = ["--node-ip-address", "127.0.0.1", "--object-store-memory", "100000000", "--disable-usage-stats"]
# Token auth off: the cluster lives on 127.0.0.1 for one test module; a token left in ~/.ray by another
# Ray session would otherwise be half-applied.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


class RayLab:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ENV)
        self.nodes[name] = process
        return process

    def head(self, cpus: int = 0) -> None:
        self._spawn("head", [str(BIN / "ray"), "start", "--head", "--port", str(self.port), "--num-cpus", str(cpus),
                             "--include-dashboard=false", *SMALL, "--block"])
        self.wait(lambda r: True, 90)

    def worker(self, name: str, cpus: int = 1) -> None:
        before = self.alive_nodes()
        self._spawn(name, [str(BIN / "ray"), "start", "--address", self.address, "--num-cpus", str(cpus), *SMALL,
                           "--block"])
        self.wait(lambda count: count > before, 90)

    def attach(self, inventory: Path, cpus: int = 1, timeout: float = 120, name: str = "attach") -> str:
        """`edgekit devices attach` as a lab host runs it; returns its output once a device is attached."""
        process = self._spawn(name, [str(BIN / "edgekit"), "devices", "attach", "--cluster", self.address, "-i",
                                     str(inventory), "--num-cpus", str(cpus)])
        log = self.root / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "attached " in text:
                return text
            if process.poll() is not None:
                raise RuntimeError(f"attach exited {process.returncode}: {text[-2000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"attach did not attach within {timeout} s: {log.read_text()[-2000:]}")

    def alive_nodes(self) -> int:
        lines = self._ask("print(sum(1 for n in ray.nodes() if n['Alive']))")
        return int(lines[-1]) if lines and lines[-1].isdigit() else 0

    def node_labels(self) -> list[dict[str, str]]:
        """Each alive node's labels, as `ray.nodes()` reports them."""
        lines = self._ask("import json; print(json.dumps([n.get('Labels', {}) for n in ray.nodes() if n['Alive']]))")
        return json.loads(lines[-1]) if lines else []

    def _ask(self, code: str) -> list[str]:
        """A driver's stdout lines, in a child process: the test process never imports Ray."""
        probe = ("import ray, logging; ray.init(address=%r, log_to_driver=False, logging_level=logging.ERROR)\n"
                 % self.address) + code
        try:
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=ENV)
        except subprocess.TimeoutExpired:
            return []
        return done.stdout.strip().splitlines()

    def wait(self, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = self.alive_nodes()
            if count and ready(count):
                return
            time.sleep(1)
        raise RuntimeError(f"cluster not ready within {timeout} s; logs in {self.root}")

    def kill(self, name: str) -> None:
        """The node dies at once, as a host losing power: SIGKILL to its whole process group, and to the
        groups its children started (`edgekit devices attach` runs its `ray start` in a session of its own)."""
        import psutil

        process = self.nodes.pop(name)
        groups = {process.pid}
        try:
            for child in psutil.Process(process.pid).children(recursive=True):
                try:
                    groups.add(os.getpgid(child.pid))
                except ProcessLookupError:
                    continue
        except psutil.NoSuchProcess:
            pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def stop(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + (["head"] if "head" in self.nodes else []):
            process = self.nodes.pop(name)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
