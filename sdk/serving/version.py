"""One served version of a model: its artifact checked, loaded in workers, warmed up, then serving.

Requests arrive as float arrays named after the source model's inputs; they are fed to
the artifact through `edgekit.iocast` (its own scale and zero point, the one place that
quantizes) and its integer outputs are dequantized there too. A version counts the
requests it is serving, so a rollout can move traffic and close the old version only
when its last request has been answered.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import iocast
from edgekit.artifact import Artifact, TensorSpec
from edgekit.errors import EdgekitError, InputError, did_you_mean
from edgekit.manifest import Manifest
from edgekit.serving.batching import Batcher
from edgekit.serving.drift import DriftMonitor
from edgekit.serving.pool import WorkerPool

log = logging.getLogger("edgekit.serve")


@dataclass
class ServeSettings:
    target: str | None = None  # which target's artifact serves (default: the first that passed verification)
    format: str | None = None  # tflite | onnx | openvino (default: the target's first)
    workers: int = 1  # worker processes per served version
    batch_max: int = 1  # rows per runtime call with dynamic batching; 1 = off
    batch_delay_ms: float = 2.0
    timeout: float = 30.0  # seconds one inference may take before its worker is replaced
    load_timeout: float = 120.0
    log_dir: Path | None = None
    drift_window: int = 100
    drift_warn_above: float = 0.01
    drift_interval_s: float = 60.0


def choose_artifact(manifest: Manifest, target: str | None, fmt: str | None) -> Artifact:
    """The artifact that serves: of `target` (and `fmt`), among those that passed verification."""
    passed = [a for a in manifest.artifacts if a.passed]
    where = manifest.path.parent if manifest.path else "the manifest"
    if target is not None:
        targets = {a.target for a in manifest.artifacts}
        if target not in targets:
            raise InputError(f"--target {target}: {where} has no artifact for it{did_you_mean(target, targets)}")
        passed = [a for a in passed if a.target == target]
    if fmt is not None:
        formats = {a.format for a in passed}
        passed = [a for a in passed if a.format == fmt]
        if not passed:
            raise InputError(f"--format {fmt}: no verified artifact of that format{did_you_mean(fmt, formats)}")
    if not passed:
        raise InputError(f"{where}: no artifact{' of target ' + target if target else ''} passed verification; "
                         "a failed artifact is never served")
    return passed[0]


def placement(artifact: Artifact) -> dict[str, Any]:
    """Runtime, device, providers and threads from the artifact's target profile (as `edgekit bench` runs it)."""
    from edgekit.targets.loader import load_target
    from edgekit.targets.schema import Format

    job = {"path": str(artifact.path), "runtime": artifact.runtime, "device": artifact.device or "CPU",
           "providers": ["CPUExecutionProvider"], "threads": None, "precision": artifact.precision or None}
    try:
        profile = load_target(artifact.profile or artifact.target)
    except EdgekitError as exc:
        log.warning("%s: target profile not loadable (%s); running on %s with the runtime's default threads",
                    artifact.path.name, exc, job["device"])
        return job
    recipe = profile.formats.get(Format(artifact.format))
    if recipe is not None:
        job.update(device=recipe.device, providers=list(recipe.providers), threads=recipe.threads)
    return job


def check_files(artifact: Artifact) -> None:
    """The artifact's files are there and hash to the manifest's sha256 (OpenVINO: .xml then .bin)."""
    digest = hashlib.sha256()
    for file in artifact.files():
        if not file.is_file():
            raise InputError(f"{file.name}: file missing (listed in the manifest)")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    if artifact.sha256 and digest.hexdigest() != artifact.sha256:
        raise InputError(f"{artifact.path.name}: sha256 {digest.hexdigest()[:12]} does not match the manifest's "
                         f"{artifact.sha256[:12]}; the file changed after verification")


class ServedVersion:
    def __init__(self, model: str, version: int, folder: Path, settings: ServeSettings, metrics):
        self.model, self.version, self.folder = model, version, folder
        self.settings, self.metrics = settings, metrics
        self.manifest = Manifest.read(folder / "manifest.json")
        self.artifact = choose_artifact(self.manifest, settings.target, settings.format)
        self.job = placement(self.artifact)
        self.inputs = [TensorSpec.from_dict(t) for t in self.manifest.source["inputs"]]
        self.outputs = [TensorSpec.from_dict(t) for t in self.manifest.source["outputs"]]
        self.labels_list = self.manifest.labels
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.pool: WorkerPool | None = None
        self.batcher: Batcher | None = None
        self.notes: list[str] = []
        self.drift: DriftMonitor | None = None
        self.device = self.job["device"]  # the device that actually runs it, once loaded

    @property
    def labels(self) -> dict[str, str]:
        """Prometheus labels: model, version, runtime, device (the device that actually runs it)."""
        return {"model": self.model, "version": str(self.version), "runtime": self.artifact.runtime, "device": self.device}

    @property
    def static_batch(self) -> int | None:
        first = self.artifact.inputs[0].shape[0] if self.artifact.inputs and self.artifact.inputs[0].shape else None
        return first if isinstance(first, int) else None

    async def load(self) -> None:
        """Check the files, start the workers, warm each up; raise with the reason when any step fails."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_files, self.artifact)
        log_file = self.settings.log_dir / f"{self.model}-{self.version}.log" if self.settings.log_dir else None
        self.pool = WorkerPool(self.job, self.settings.workers, timeout=self.settings.timeout,
                               load_timeout=self.settings.load_timeout, log_file=log_file,
                               label=f"{self.model} version {self.version}")
        await self.pool.start()
        self.notes = list(self.pool.notes)
        if any(n.startswith("running on the CPU") for n in self.notes):  # the worker fell back, and said so
            self.device = "CPU"
        self.pool.on_restart = lambda reason: self.metrics.restarts.labels(**self.labels).inc()
        try:
            warm = {s.name: np.zeros((1, *(d or 1 for d in s.shape[1:])), dtype=s.dtype if s.dtype != "float16" else "float32")
                    for s in self.inputs}
            results = await asyncio.gather(*(self._run(warm) for _ in range(self.settings.workers)))
            for outputs in results:
                for spec in self.outputs:
                    if spec.name not in outputs or not np.all(np.isfinite(outputs[spec.name])):
                        raise InputError(f"warm-up inference gave no finite '{spec.name}' output")
        except Exception:
            await self.pool.close()
            raise
        ranges = (self.manifest.calibration or {}).get("ranges") or {}
        if ranges:  # about the data, whatever the artifact: int8 ones saturate there, float ones left their calibration
            self.drift = DriftMonitor(ranges, self.metrics, {"model": self.model, "version": str(self.version)},
                                      window=self.settings.drift_window, warn_above=self.settings.drift_warn_above,
                                      interval_s=self.settings.drift_interval_s)
        if self.settings.batch_max > 1:
            if self.static_batch is not None:
                self.notes.append(f"dynamic batching off: the artifact's batch is fixed to {self.static_batch}")
            else:
                self.batcher = Batcher(self._run, max_rows=self.settings.batch_max,
                                       delay_s=self.settings.batch_delay_ms / 1000, concurrency=self.settings.workers,
                                       on_batch=lambda rows: self.metrics.batch_rows.labels(**self.labels).observe(rows))

    async def predict(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float (or source-dtype) arrays by source input name -> float32 outputs by source output name."""
        rows = len(next(iter(arrays.values())))
        if self.batcher is not None:
            return await self.batcher.submit(arrays, rows)
        static = self.static_batch
        if static is not None and rows != static:  # e.g. an NPU artifact of batch 1: one call per row
            parts = await asyncio.gather(*(self._run({k: v[i : i + static] for k, v in arrays.items()})
                                           for i in range(0, rows, static)))
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        return await self._run(arrays)

    async def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {spec.name: iocast.to_input(spec, arrays[source.name])
                 for spec, source in zip(self.artifact.inputs, self.inputs, strict=True)}
        outputs = await self.pool.infer(feeds)
        return {source.name: iocast.from_output(spec, outputs[spec.name])
                for spec, source in zip(self.artifact.outputs, self.outputs, strict=True)}

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def exit(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def drain_and_close(self) -> None:
        """Wait for the requests already routed here, then stop the workers."""
        await self._idle.wait()
        if self.batcher is not None:
            await self.batcher.close()
        if self.pool is not None:
            await self.pool.close()

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.artifact.target, "format": self.artifact.format, "precision": self.artifact.precision,
            "artifact": str(self.artifact.path.relative_to(self.folder)), "sha256": self.artifact.sha256,
            **self.labels, "threads": self.job["threads"], "workers": self.settings.workers,
            "worker_pids": self.pool.pids() if self.pool else [], "restarts": self.pool.restarts if self.pool else 0,
            "backend": self.pool.describe if self.pool else {}, "batching": self.batcher is not None,
            "notes": self.notes, "inflight": self.inflight,
        }
