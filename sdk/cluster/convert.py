"""Conversion jobs on the cluster: one per (target, format) group, on any node with a CPU.

The driver loads and checks the source, calibration and evaluation data once (bad input is
exit 2 before a job is submitted); each job gets them as values and runs
edgekit.cluster.jobs.convert_group. A job whose node is lost is retried once by Ray on
another node (max_retries=1); lost twice, it is that group's error row, naming the node.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.console import Progress

POLL_S = 1.0


def run_plans(cluster, source, plans, calib, calibration_samples: int, evaluation, staging: Path, verify: bool,
              progress: Progress, repair: bool = True):
    """(artifacts with their files written under `staging`, error entries), in plan order.

    `calib` holds the calibration samples, then any unseen samples to verify on: each job's
    `edgekit.convert` cuts it at `calibration_samples` as the driver did."""
    from edgekit.cluster import jobs
    from edgekit.cluster.board import progress_line, remote_board
    from edgekit.manifest import _artifact_from

    ray = cluster.ray
    if source.path is None:
        from edgekit.errors import InputError

        raise InputError("--cluster converts a model file or SavedModel folder (nodes cannot share an in-memory "
                         "model); save it first, e.g. model.save('model.keras')")
    blob, name = jobs.pack_source(Path(source.path))
    shared = [ray.put(blob), ray.put(calib), ray.put(evaluation)]
    board = remote_board(ray)
    task = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(_tracked_convert)
    pending: dict[Any, tuple[int, str]] = {}
    for index, plan in enumerate(plans):
        job = f"convert:{plan.target.name}/{plan.format.value}"
        ray.get(board.submitted.remote(job, "convert"))
        ref = task.remote(board, job, shared[0], name, plan.target, plan.format.value, shared[1], shared[2],
                          plan.goal, verify, repair, calibration_samples)
        pending[ref] = (index, job)
    progress.info(f"cluster {cluster.address}: {len(plans)} conversion job(s) on {len(cluster.cpu_nodes())} CPU node(s)")
    outcomes: dict[int, Any] = {}
    waiting = list(pending)
    last = ""
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_S)
        for ref in ready:
            index, job = pending[ref]
            entry = None
            try:
                outcomes[index] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                entry = ray.get(board.snapshot.remote()).get(job)
                outcomes[index] = _lost(job, exc, entry)
            starts = (entry or ray.get(board.snapshot.remote()).get(job) or {}).get("starts", [])
            if len(starts) > 1 and not isinstance(outcomes[index], str):
                progress.info(f"{job}: node {starts[0].get('node', '?')[:12]} was lost; retried on node "
                              f"{starts[-1].get('node', '?')[:12]}")
        line = progress_line(ray.get(board.snapshot.remote()))
        if line != last:
            progress.info(line)
            last = line
    artifacts, errors = [], []
    for index, plan in enumerate(plans):
        outcome = outcomes[index]
        if isinstance(outcome, str):
            errors.append({"target": plan.target.name, "format": plan.format.value, "error": outcome})
            progress.info(f"FAILED {plan.target.name}/{plan.format.value}: {outcome}")
            continue
        made, failed = _unpack(outcome, staging, _artifact_from)
        artifacts += made
        errors += failed
        node = outcome["where"].get("host", "?")
        for artifact in made:
            progress.info(f"{'ok' if artifact.passed else 'FAIL'} {artifact.target}/{artifact.format} "
                          f"({artifact.precision}) on {node}")
        for entry in failed:
            progress.info(f"FAILED {entry['target']}/{entry['format']} on {node}: {entry['error']}")
    ray.kill(board)
    return artifacts, errors


def _tracked_convert(board, job, blob, name, target, fmt, calib, evaluation, goal, verify, repair,
                     calibration_samples):
    import ray

    from edgekit.cluster.jobs import convert_group, where

    ray.get(board.started.remote(job, where()))
    result = convert_group(blob, name, target, fmt, calib, evaluation, goal, verify, repair, calibration_samples)
    board.done.remote(job)
    return result


def _unpack(outcome: dict[str, Any], staging: Path, artifact_from) -> tuple[list, list]:
    """Write a job's files under `staging` as the local run lays them out; its Artifacts pointing there."""
    for relative, data in outcome["files"].items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = outcome["manifest"]
    made = [artifact_from(entry, staging) for entry in manifest["artifacts"]]
    for artifact in made:
        artifact.path = Path(os.path.abspath(artifact.path))
    return made, list(manifest.get("errors", []))


def _lost(job: str, exc: Exception, entry: dict[str, Any] | None) -> str:
    starts = (entry or {}).get("starts", [])
    cause = getattr(exc, "cause", None)
    if cause is not None and not getattr(exc, "__class__", type).__name__.endswith(("DiedError", "CrashedError")):
        where = starts[-1].get("node", "?")[:12] if starts else "?"
        return f"{type(cause).__name__} on node {where}: {str(cause).splitlines()[-1][:300] if str(cause) else ''}"
    nodes = ", ".join(f"{s.get('host', '?')} (node {s.get('node', '?')[:12]})" for s in starts) or "no node"
    retried = " after one retry" if len(starts) > 1 else ""
    return f"cluster job lost{retried}: ran on {nodes}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
