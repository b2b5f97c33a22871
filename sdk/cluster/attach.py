"""`edgekit devices attach --cluster ADDRESS`: this lab host joins the cluster and offers its devices.

Each device of the inventory is health-checked first (the check of `edgekit devices`); those
that pass become slots: the node is started with one unit of the custom resource
`device:NAME` each and labels naming them and their targets, then a detached DeviceSlot actor per device
takes that unit. The command stays in the foreground while the node runs; Ctrl-C (or
SIGTERM) removes the slots and the node.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgekit.console import Progress
from edgekit.errors import EdgekitError, InputError

NODE_START_S = 120.0
LABEL_MAX = 63  # Ray node labels follow Kubernetes label syntax
OBJECT_STORE_BYTES = 100_000_000  # slots pass artifacts of a few MB; Ray's default takes 30 % of memory


def attach(address: str, inventory, names=None, cpus: int = 1, progress: Progress | None = None,
           ready_file: Path | None = None) -> int:
    """Join, advertise, block; returns the exit code (1 when a device failed its check or the node died)."""
    from edgekit.benchmarks.remote.check import check_device, format_row
    from edgekit.cluster.connect import NAMESPACE, probe, require_ray
    from edgekit.cluster.slots import DeviceSlot, list_slots, resource
    from edgekit.targets.devices import load_inventory, select

    progress = progress or Progress()
    devices = select(load_inventory(inventory), names)
    host, port = probe(address)
    ray = require_ray()
    healthy, failed = [], []
    for device in devices:
        status = check_device(device)
        progress.info(format_row(status))
        (healthy if status.ok else failed).append((device, status))
    for device, status in failed:
        progress.info(f"not attached: {device.name}: failed its health check: {status.error}")
    if not healthy:
        raise EdgekitError(f"no device passed its health check ({', '.join(d.name for d, _ in failed)}); nothing to attach")
    resources = {resource(d.name): 1 for d, _ in healthy}
    node = _start_node(f"{host}:{port}", cpus, resources, node_labels([d for d, _ in healthy]))
    try:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import logging

        ray.init(address=f"{host}:{port}", namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        _wait_for_resources(ray, resources, node)
        taken = list_slots(ray)
        slots = []
        for device, status in healthy:
            if device.name in taken:
                raise InputError(f"device '{device.name}' is already attached to {host}:{port} by another host; "
                                 "names must be unique across the lab")
            actor = ray.remote(DeviceSlot).options(
                name=resource(device.name), namespace=NAMESPACE, lifetime="detached", num_cpus=0,
                resources={resource(device.name): 1}, max_restarts=0, max_concurrency=1)
            slots.append(actor.remote(device, status.to_dict()))
        for slot in slots:
            described = ray.get(slot.describe.remote(), timeout=NODE_START_S)
            progress.info(f"attached {described['name']} (target {described['target']}) to {host}:{port}")
        if ready_file is not None:
            ready_file.write_text(json.dumps([d.name for d, _ in healthy]))
        return _block(node, slots, ray, 1 if failed else 0)
    finally:
        _stop(node)


def node_labels(devices) -> dict[str, str]:
    """The node's Ray labels: which devices it serves and the targets they realize.

    `ray start --labels k=v,...` is Ray's documented route (hidden from `ray start --help` in 2.60,
    but parsed); Ray checks Kubernetes label syntax and refuses to start the node on a bad value, so
    values are made valid here. Informational (`ray.nodes()`, the dashboard): jobs find a device by
    its custom resource and its slot's describe(), not by label.
    """
    return {"edgekit.io/devices": _label_value(d.name for d in devices),
            "edgekit.io/targets": _label_value(sorted({d.target for d in devices}))}


def _label_value(names) -> str:
    """At most 63 of [A-Za-z0-9._-], alphanumeric at both ends (a target may be a profile's path)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", ".".join(names))[:LABEL_MAX]
    return value.strip("._-")


def _start_node(address: str, cpus: int, resources: dict, labels: dict) -> subprocess.Popen:
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    argv = [ray_bin, "start", "--address", address, "--num-cpus", str(cpus), "--resources", json.dumps(resources),
            "--labels", ",".join(f"{k}={v}" for k, v in labels.items()), "--object-store-memory",
            str(OBJECT_STORE_BYTES), "--disable-usage-stats", "--block"]
    log = open(os.environ.get("EDGEKIT_ATTACH_LOG", os.devnull), "ab")
    return subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)


def _wait_for_resources(ray, resources: dict, node: subprocess.Popen) -> None:
    deadline = time.monotonic() + NODE_START_S
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise EdgekitError(f"`ray start` exited with {node.returncode} before the node joined")
        total = ray.cluster_resources()
        if all(total.get(k, 0) >= v for k, v in resources.items()):
            return
        time.sleep(0.5)
    raise EdgekitError(f"the node did not join within {NODE_START_S:g} s")


def _block(node: subprocess.Popen, slots, ray, code: int) -> int:
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop and node.poll() is None:
        time.sleep(0.5)
    for slot in slots:
        try:
            ray.kill(slot)
        except Exception:  # the node may be gone already
            pass
    return code if node.poll() is None else 1


def _stop(node: subprocess.Popen) -> None:
    if node.poll() is None:
        try:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(node.pid, signal.SIGKILL)
