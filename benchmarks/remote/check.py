"""`edgekit devices`: reach each device and say what it is and what it can run, one row each.

A device that fails costs its own row (with the one-line reason); the others are still checked.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.benchmarks.remote.fingerprint import RUNTIME_PACKAGES, probe, runtimes
from edgekit.benchmarks.remote.transport import DeviceError, NotAuthenticated, Unreachable, open_transport


@dataclass
class DeviceStatus:
    name: str
    transport: str
    address: str
    target: str
    runner: str
    reachable: bool = False
    authenticated: bool = False
    free_disk_mb: float | None = None
    python: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)  # distribution -> version on the device
    facts: dict[str, Any] = field(default_factory=dict)  # cpu_model, cores, governor, temperatures_c, ...
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check_device(device) -> DeviceStatus:
    status = DeviceStatus(device.name, device.transport.value, device.describe(), device.target, device.runner.value)
    try:
        transport = open_transport(device)
    except NotAuthenticated as exc:
        status.reachable, status.error = True, str(exc)
        return status
    except Unreachable as exc:
        status.error = str(exc)
        return status
    except DeviceError as exc:
        status.error = str(exc)
        return status
    status.reachable = status.authenticated = True
    with transport:
        try:
            transport.prepare(device.workdir)
            status.facts = probe(transport, device.workdir)
            status.free_disk_mb = status.facts.pop("free_disk_mb", None)
            if device.runner.value == "python":
                found = runtimes(transport, device.python)
                status.python, status.runtimes = found["python"], found["packages"]
                if "numpy" not in status.runtimes:
                    status.error = f"NumPy is not installed for {device.python} on the device (the worker needs it)"
                elif not any(p in status.runtimes for names in RUNTIME_PACKAGES.values() for p in names):
                    status.error = (f"no runtime for {device.python} on the device: pip install ai-edge-litert, "
                                    "onnxruntime or openvino there")
            else:
                status.runtimes = _binary(transport, device)
        except DeviceError as exc:
            status.error = str(exc)
    return status


def _binary(transport, device) -> dict[str, str]:
    """A vendor binary already on the device must be there and executable; a local one is pushed at bench."""
    if device.binary:
        return {device.runner.value: f"local {device.binary} (pushed at bench)"}
    path = device.binary_on_device
    done = transport.run(["sh", "-c", '[ -x "$0" ] && echo ok', path], 15.0)
    if "ok" not in done.stdout:
        raise DeviceError(f"{device.runner.value}: {path} is not an executable file on the device")
    return {device.runner.value: path}


def format_row(status: DeviceStatus) -> str:
    """One line per device for the console: what `--json` holds, in short."""
    head = f"{status.name}  {status.address}  target {status.target}"
    if status.error:
        return f"{head}  ERROR  {status.error}"
    facts = status.facts
    parts = [head, "ok"]
    if facts.get("cpu_model"):
        parts.append(f"{facts['cpu_model']}" + (f" x{facts['cores']}" if facts.get("cores") else ""))
    if facts.get("governor"):
        parts.append(f"governor {','.join(facts['governor'])}")
    temps = facts.get("temperatures_c")
    parts.append(f"{max(temps.values()):.1f} °C" if temps else "no temperature sensor")
    if status.free_disk_mb is not None:
        parts.append(f"{status.free_disk_mb / 1024:.1f} GB free")
    if status.runtimes:
        parts.append(", ".join(f"{k} {v}" for k, v in status.runtimes.items() if k != "numpy"))
    return "  ".join(parts)
