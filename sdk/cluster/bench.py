"""Benchmark jobs on the cluster's device slots: each artifact on a healthy device realizing its target.

Before a job is submitted every candidate slot runs its health check; one that fails is out
of rotation for this run and named. Jobs for one device queue on its slot (one at a time);
an artifact realizable by several devices goes to the least loaded. A job whose slot is lost
(its node died) is retried once on another healthy device realizing the same target, else it
is that artifact's error row naming the device and its node. Artifacts no device on the
cluster realizes are measured on this host, and the run says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.console import Progress
from edgekit.errors import InputError

CHECK_TIMEOUT_S = 120.0
POLL_S = 1.0


@dataclass
class ClusterPlan:
    slots: dict[str, Any]  # name -> actor handle, healthy ones only
    info: dict[str, dict[str, Any]]  # name -> describe()
    candidates: dict[int, list[str]] = field(default_factory=dict)  # item index -> device names
    errors: dict[int, str] = field(default_factory=dict)  # item index -> error row text
    local: list[int] = field(default_factory=list)  # measured on this host


def plan(cluster, items, names: list[str] | None, all_artifacts: bool, progress: Progress) -> ClusterPlan:
    ray = cluster.ray
    from edgekit.cluster.slots import list_slots

    slots = list_slots(ray)
    if names:
        unknown = [n for n in names if n not in slots]
        if unknown:
            from edgekit.errors import did_you_mean

            raise InputError(f"--device {unknown[0]}: no such device attached to cluster {cluster.address}"
                             f"{did_you_mean(unknown[0], slots) if slots else ' (none attached: run `edgekit devices attach`)'}")
        slots = {n: slots[n] for n in names}
    info = describe_slots(ray, slots)
    wanted = [n for n in info if names or any(all_artifacts or _realizes(info[n], i.artifact) for i in items)]
    checks = {n: slots[n].check.remote() for n in wanted}
    healthy, unhealthy = {}, {}
    for name, ref in checks.items():
        try:
            status = ray.get(ref, timeout=CHECK_TIMEOUT_S)
            error = status.get("error")
        except (ray.exceptions.RayError, TimeoutError) as exc:
            error = f"its slot did not answer ({type(exc).__name__})"
        if error:
            unhealthy[name] = error
            progress.info(f"device {name}: failed its health check, out of rotation for this run: {error}")
        else:
            healthy[name] = slots[name]
    result = ClusterPlan(healthy, info)
    for index, item in enumerate(items):
        if item.error:
            result.local.append(index)  # the local path reports it as it always has
            continue
        fits = [n for n in info if serves(info[n], item.artifact, all_artifacts)]
        usable = [n for n in fits if n in healthy]
        if usable:
            result.candidates[index] = usable
        elif fits:
            result.errors[index] = "; ".join(f"device {n}: failed its health check: {unhealthy.get(n, 'not reachable')}"
                                             for n in fits)
        elif names:
            result.errors[index] = f"no device among {', '.join(names)} realizes target '{item.artifact.target}'"
        else:
            result.local.append(index)
    if result.local and [i for i in result.local if not items[i].error]:
        targets = sorted({items[i].artifact.target for i in result.local if not items[i].error})
        progress.info(f"no device on cluster {cluster.address} realizes target(s) {', '.join(targets)}: "
                      "those artifacts are measured on this host")
    return result


def describe_slots(ray, slots: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> describe() of each slot that answers; one whose node is gone is not a slot any more."""
    info = {}
    for name, slot in slots.items():
        try:
            info[name] = ray.get(slot.describe.remote(), timeout=CHECK_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError):
            continue
    return info


def serves(info: dict[str, Any], artifact, all_artifacts: bool = False) -> bool:
    """Whether a slot (its describe()) can measure this artifact: it realizes its target and runs its format."""
    return (all_artifacts or _realizes(info, artifact)) and artifact.format in _formats(info)


def _realizes(info: dict[str, Any], artifact) -> bool:
    return info["target"] in {artifact.target, getattr(artifact, "profile", None)}


def _formats(info: dict[str, Any]) -> set[str]:
    from edgekit.targets.devices import RunnerKind as Runner

    try:
        return set(Runner(info["runner"]).formats)
    except (ValueError, AttributeError):
        return {"tflite", "onnx", "openvino"}


def run(cluster, cplan: ClusterPlan, items, settings, dataset, source_inputs, scratch: Path,
        progress: Progress) -> dict[int, tuple[Any, Path]]:
    """index -> (Measurement, outputs.npz path) for every item of `cplan.candidates` and `cplan.errors`."""
    from edgekit.benchmarks.remote.bench import _blank
    from edgekit.cluster.board import progress_line, remote_board

    ray = cluster.ray
    board = remote_board(ray)
    load = {name: 0 for name in cplan.slots}
    pending: dict[Any, tuple[int, str, str]] = {}
    tried: dict[int, list[str]] = {}
    done: dict[int, tuple[Any, Path]] = {}

    def submit(index: int) -> bool:
        options = [n for n in cplan.candidates[index] if n in cplan.slots and n not in tried.get(index, [])]
        if not options:
            return False
        name = min(options, key=lambda n: load[n])
        load[name] += 1
        tried.setdefault(index, []).append(name)
        item = items[index]
        job = f"bench:{item.name}@{name}#{len(tried[index])}"
        ray.get(board.submitted.remote(job, name))
        files = {p.name: p.read_bytes() for p in item.artifact.files()}
        ref = cplan.slots[name].bench.remote(board, job, files, item, settings, dataset, source_inputs)
        pending[ref] = (index, name, job)
        return True

    for index in cplan.candidates:
        submit(index)
    last = ""
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            index, name, job = pending.pop(ref)
            load[name] -= 1
            folder = scratch / f"cluster-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                measurement, outputs = ray.get(ref)
            except ray.exceptions.RayError as exc:
                node = cplan.info.get(name, {}).get("node", "?")
                lost = f"device {name}: its slot on node {node[:12]} was lost ({type(exc).__name__})"
                cplan.slots.pop(name, None)  # out of rotation: its node is gone
                progress.info(f"{lost}; {'retrying ' + items[index].name + ' on another device' if _retry(index, tried, cplan) else 'no other device can run ' + items[index].name}")
                if submit(index):
                    continue
                measurement = _blank(items[index], _Named(name, cplan.info.get(name, {})))
                measurement.error = lost + (f"; also tried {', '.join(tried[index][:-1])}" if len(tried[index]) > 1 else "")
                outputs = None
            if len(tried.get(index, [])) > 1 and not measurement.error:
                measurement.notes.append(f"retried on device {name} after device {tried[index][0]}'s node was lost")
            path = folder / "outputs.npz"
            if outputs is not None:
                path.write_bytes(outputs)
            done[index] = (measurement, path)
        line = progress_line(ray.get(board.snapshot.remote()))
        if line != last:
            progress.info(line)
            last = line
    for index, error in cplan.errors.items():
        measurement = _blank(items[index], _Named("(none)", {}))
        measurement.device = None
        measurement.error = error
        done[index] = (measurement, scratch / f"cluster-{index}" / "outputs.npz")
    ray.kill(board)
    return done


def _retry(index: int, tried: dict[int, list[str]], cplan: ClusterPlan) -> bool:
    return any(n in cplan.slots and n not in tried[index] for n in cplan.candidates.get(index, []))


class _Named:
    """Just enough of a Device for an error row's device block."""

    def __init__(self, name: str, info: dict[str, Any]):
        from types import SimpleNamespace

        self.name = name
        self.target = info.get("target")
        self.transport = SimpleNamespace(value=info.get("transport"))
        self.runner = SimpleNamespace(value=info.get("runner"))
        self._address = info.get("address")

    def describe(self) -> str:
        return self._address or ""
