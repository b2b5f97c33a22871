"""Device slots: one named actor per attached device, holding that device's exclusive custom resource.

`edgekit devices attach` creates them on its own node; the resource `device:NAME` (1 unit,
on that node only) pins the actor there, and an actor runs one call at a time, so a
benchmark never shares a device with another. The actor's `describe()` carries the
attributes a job selects on (target, SoC/CPU, OS, runtimes).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

PREFIX = "device:"


def resource(name: str) -> str:
    return f"{PREFIX}{name}"


class DeviceSlot:
    """Plain class; attach makes it a detached actor with `resources={device:NAME: 1}`."""

    def __init__(self, device, status: dict[str, Any]):
        from edgekit.cluster.jobs import where

        self.device = device
        self.status = status
        self.place = where()

    def describe(self) -> dict[str, Any]:
        facts = self.status.get("facts") or {}
        return {"name": self.device.name, "target": self.device.target, "transport": self.device.transport.value,
                "address": self.device.describe(), "runner": self.device.runner.value,
                "cpu": facts.get("cpu_model"), "os": facts.get("os") or facts.get("kernel"),
                "runtimes": self.status.get("runtimes", {}), **self.place}

    def check(self) -> dict[str, Any]:
        """The health check of `edgekit devices`, run now from the host that reaches the device."""
        from edgekit.benchmarks.remote.check import check_device

        self.status = check_device(self.device).to_dict()
        return self.status

    def bench(self, board, job: str, files: dict[str, bytes], item, settings, dataset, source_inputs):
        """One artifact measured on this device: (Measurement, outputs.npz bytes or None)."""
        import ray

        from edgekit.benchmarks.remote.bench import run_on_device
        from edgekit.console import SILENT

        from edgekit.cluster.jobs import _writable

        dataset = _writable(dataset)
        ray.get(board.started.remote(job, self.place))
        with tempfile.TemporaryDirectory(prefix="edgekit-slot-") as scratch:
            root = Path(scratch)
            original = item.artifact.path
            for name, data in files.items():
                (root / name).write_bytes(data)
            item.artifact.path = root / original.name
            ((measurement, outputs),) = run_on_device(self.device, [item], settings, dataset, source_inputs,
                                                      root / "work", SILENT)
            measurement.path = str(original)
            data = outputs.read_bytes() if outputs.is_file() else None
        board.done.remote(job)
        return measurement, data


def list_slots(ray) -> dict[str, Any]:
    """name -> actor handle, for every device attached to the cluster."""
    from ray.util import list_named_actors

    from edgekit.cluster.connect import NAMESPACE

    names = [a["name"] if isinstance(a, dict) else a for a in list_named_actors(all_namespaces=True)
             if not isinstance(a, dict) or a.get("namespace") == NAMESPACE]
    slots = {}
    for name in names:
        if name.startswith(PREFIX):
            try:
                slots[name[len(PREFIX):]] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue  # gone since it was listed
    return slots
