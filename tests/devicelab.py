"""A real SSH "device" on this host, for the device tests: OpenSSH's sshd on 127.0.0.1 and a free
port, keys generated per run, and a Python environment with only NumPy and the runtimes.

Nothing here is a mock: the sshd is Debian's openssh-server (installed with apt-get when
missing and we may; otherwise the fixture fails saying what to install), the device venv
is a real venv whose interpreter cannot import TensorFlow or edgekit.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# What the device has: the worker's one dependency and the three runtimes.
DEVICE_DISTRIBUTIONS = ("numpy", "ai-edge-litert", "onnxruntime", "openvino")
MODULES = {"numpy": "numpy", "ai-edge-litert": "ai_edge_litert.interpreter", "onnxruntime": "onnxruntime",
           "openvino": "openvino"}
NOT_ON_DEVICE = {"tensorflow", "tensorflow-cpu", "keras", "edgekit"}


def ensure_package(binary: str, package: str) -> str:
    """`binary`'s path, installing Debian's `package` when absent and we are root with apt-get."""
    if Path(binary).exists() or shutil.which(binary):
        return binary if Path(binary).exists() else shutil.which(binary)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, timeout=300)
    found = binary if Path(binary).exists() else shutil.which(binary)
    if not found:
        raise RuntimeError(f"{binary} not found and could not be installed: apt-get install {package} (as root)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SSHServer:
    """One sshd, -D in the foreground, stopped (with every session it forked) by stop()."""

    def __init__(self, root: Path):
        ensure_package(SSHD, "openssh-server")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        self.other_key = root / "stranger_ed25519"
        for key in (self.host_key, self.client_key, self.other_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
        (root / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self.port = free_port()
        self.known_hosts = root / "known_hosts"
        host_pub = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}", f"PidFile {root}/sshd.pid",
            f"AuthorizedKeysFile {root}/authorized_keys", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "Subsystem sftp internal-sftp", "MaxStartups 100", "MaxSessions 100", "LogLevel ERROR", "",
        ]))
        self.user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = (self.root / "sshd.log").open("a")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log,
                                        start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 15 s")

    def stop(self) -> None:
        """Stop sshd and the per-connection sshd processes it forked: every link drops now."""
        import psutil

        if self.process is None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        sshd_children = [c for c in children if _name(c).startswith("sshd")]
        self.process.kill()
        self.process.wait(timeout=10)
        for child in sshd_children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.process = None

    def table(self, name: str, python: str, workdir: Path, **extra) -> str:
        """A [devices.NAME] table for this server."""
        values = {"transport": "ssh", "target": "cpu", "host": "127.0.0.1", "port": self.port, "user": self.user,
                  "key": str(self.client_key), "known_hosts": str(self.known_hosts), "python": python,
                  "workdir": str(workdir), **extra}
        lines = [f"[devices.{name}]"]
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        for key, value in values.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {_toml(value)}")
        for key, table in nested.items():
            lines.append(f"[devices.{name}.{key}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        return "\n".join(lines) + "\n"


def _name(process) -> str:
    try:
        return process.name()
    except Exception:
        return ""


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def device_venv(root: Path, distributions: tuple[str, ...] = DEVICE_DISTRIBUTIONS) -> Path:
    """A venv with only NumPy and the runtimes (and what they need): its python, no TensorFlow, no edgekit.

    The packages are symlinked from the test environment's site-packages, not installed:
    measured 0.9 s against 37.5 s for a venv plus `pip install` of the same four pins from a
    warm pip cache (2026-12-02, on the shared 2-core CI host).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for distribution in closure(distributions):
        dist = metadata.distribution(distribution)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = base / top
            target = site / top
            if source.exists() and not target.exists() and not top.endswith(".pth"):
                target.symlink_to(source)
    modules = ", ".join(MODULES[d] for d in distributions)
    check = subprocess.run([str(python), "-c", f"import {modules}\n"
                            "import importlib.util as u\n"
                            "assert u.find_spec('tensorflow') is None and u.find_spec('edgekit') is None"],
                           capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        raise RuntimeError(f"device venv is not NumPy + runtimes only: {check.stderr[-800:]}")
    return python


def closure(names) -> list[str]:
    """The distributions `names` need at run time, transitively (extras ignored), minus NOT_ON_DEVICE."""
    import re

    seen: dict[str, None] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen or key in NOT_ON_DEVICE:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = None
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
    return list(seen)
