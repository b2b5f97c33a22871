"""The cluster's jobs as plain functions: each runs the same on this host or on any node.

A job gets everything it needs as values (the source model's bytes, the target, the
calibration arrays) and returns values (the manifest entry, the files' bytes): nodes share
no filesystem with the driver. Only the scheduling (edgekit.cluster.convert, .bench) knows Ray.
"""
from __future__ import annotations

import io
import json
import socket
import tarfile
import tempfile
from pathlib import Path
from typing import Any


def pack_source(path: Path) -> tuple[bytes, str]:
    """The source model as a tar (a file, its external-data siblings, or a SavedModel folder) and its name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if path.is_dir():
            tar.add(path, arcname=path.name, filter=_plain)
        else:
            for part in sorted(p for p in path.parent.iterdir() if p == path or p.name.startswith(path.name + ".")):
                tar.add(part, arcname=part.name, filter=_plain)
    return buffer.getvalue(), path.name


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def where() -> dict[str, str]:
    """This process's node: Ray's node id when inside a Ray worker, and the host name."""
    place = {"host": socket.gethostname()}
    import sys

    if "ray" in sys.modules:  # only inside a cluster job; a local run never imports Ray
        ray = sys.modules["ray"]
        if ray.is_initialized():
            place["node"] = ray.get_runtime_context().get_node_id()
    return place


def convert_group(source_tar: bytes, source_name: str, target, fmt: str, calibration, evaluation,
                  goal, verify: bool, repair: bool = True, calibration_samples: int | None = None) -> dict[str, Any]:
    """One (target, format) group, converted and verified by `edgekit.convert` in a scratch folder.

    Returns {"manifest": that run's manifest (paths relative to it), "files": {relative path: bytes},
    "where": the node}. A conversion failure is an `errors` entry in the manifest, as locally.
    """
    from edgekit.conversion import convert

    calibration, evaluation = _writable(calibration), _writable(evaluation)
    with tempfile.TemporaryDirectory(prefix="edgekit-cluster-job-") as scratch:
        root = Path(scratch)
        with tarfile.open(fileobj=io.BytesIO(source_tar)) as tar:
            tar.extractall(root / "source", filter="data")
        output = root / "out"
        options: dict[str, Any] = {"repair": repair, "evaluation": evaluation}
        if goal is not None:
            options |= {"accuracy_aware": True, "max_accuracy_drop": goal.max_accuracy_drop,
                       "min_cosine": goal.min_cosine}
        manifest = convert(root / "source" / source_name, [target], formats=[fmt], calibration=calibration,
                           calibration_samples=calibration_samples or (calibration.samples if calibration is not None else 1),
                           output=output, verify_artifacts=verify, **options)
        files = {}
        for artifact in manifest.artifacts:
            for part in artifact.files():
                files[part.relative_to(output).as_posix()] = part.read_bytes()
        return {"manifest": json.loads((output / "manifest.json").read_text()), "files": files, "where": where()}


def _writable(data):
    """A Dataset whose arrays the runtimes may write: Ray hands out object-store arrays read-only."""
    if data is None:
        return None
    from edgekit.dataset import Dataset

    labels = None if data.labels is None else data.labels.copy()
    return Dataset({k: v.copy() for k, v in data.arrays.items()}, labels, data.origin)
