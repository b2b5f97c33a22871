"""Joining a Ray cluster as a driver: the address checked, a bounded wait, Ray's noise kept off the terminal."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import InputError, MissingDependency

NAMESPACE = "edgekit"  # device slots are named actors in it; drivers and attach hosts meet there
CONNECT_TIMEOUT_S = 10.0
DEFAULT_PORT = 6379  # `ray start --head`'s default GCS port


def require_ray():
    """The ray module, or the one line naming the extra."""
    try:
        import ray
    except ImportError:
        raise MissingDependency("--cluster needs Ray, which is not installed; install it with: "
                                "pip install 'edgekit[cluster]'") from None
    return ray


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of `HOST[:PORT]` or `ray://HOST:PORT`; anything else is exit 2 naming it."""
    text = str(address).strip()
    for scheme in ("ray://", "tcp://"):
        if text.startswith(scheme):
            raise InputError(f"--cluster {address}: give the head's GCS address as HOST:PORT (as `ray start --head` "
                             "printed it), not a Ray Client URL")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise InputError(f"--cluster {address!r}: not a cluster address; expected HOST:PORT, e.g. 10.0.0.5:6379")
    return host, int(port)


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> tuple[str, int]:
    """Check that something listens at the head's address before Ray is asked to wait for it."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise InputError(f"cluster {host}:{port} does not answer ({reason} within {timeout:g} s); start the head "
                         "with `ray start --head --port PORT` or check the address") from None
    return host, port


@dataclass
class Cluster:
    """A connected driver. `edgekit.build(..., cluster=...)` and `edgekit.benchmark(..., cluster=...)` take one
    (or an address string, connected for that call)."""

    address: str
    ray: Any = field(repr=False)

    def cpu_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]

    def close(self) -> None:
        self.ray.shutdown()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(address: str | Cluster, timeout: float = CONNECT_TIMEOUT_S) -> Cluster:
    """Join the cluster at `address` as a driver; exit 2 (InputError) when it does not answer within `timeout`."""
    if isinstance(address, Cluster):
        return address
    host, port = probe(address, timeout)
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # edgekit does not phone home on its users' behalf
    if ray.is_initialized():
        ray.shutdown()
    import logging

    try:
        ray.init(address=f"{host}:{port}", namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise InputError(f"cluster {host}:{port} answered but is not a Ray head we can join: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return Cluster(f"{host}:{port}", ray)
