"""`edgekit.benchmark`: artifacts -> one worker process each -> Measurements -> Verdicts -> Report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import Artifact, TensorSpec
from edgekit.benchmarks import budgets as budget_rules
from edgekit.benchmarks.measurement import LatencyStats, Measurement, Report, Result
from edgekit.benchmarks.metrics import fidelity, task_metrics
from edgekit.benchmarks.registry import BACKENDS, FORMAT_RUNTIME, SUFFIX_FORMAT
from edgekit.console import SILENT, Progress
from edgekit.dataset import Dataset
from edgekit.errors import EdgekitError, InputError, did_you_mean
from edgekit.manifest import Manifest, _created, edgekit_version



@dataclass
class Settings:
    warmup: int = 10
    min_runs: int = 50
    min_time: float = 1.0
    max_time: float = 60.0
    threads: int | None = None
    batch: int = 1
    backend: str | None = None
    device: str | None = None
    strict: bool = False
    timeout: float = 600.0
    raw_samples: bool = False  # keep every latency sample in the report, not the bounded summary

    def check(self) -> None:
        for name in ("warmup", "min_runs", "batch"):
            value = getattr(self, name)
            if value < (0 if name == "warmup" else 1):
                raise InputError(f"--{name.replace('_', '-')} must be at least {0 if name == 'warmup' else 1}, got {value}")
        if self.min_time < 0 or self.timeout <= 0:
            raise InputError("--min-time must be >= 0 and the timeout > 0")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise InputError(f"unknown backend '{self.backend}'{did_you_mean(self.backend, BACKENDS)}")


@dataclass
class _Item:
    artifact: Artifact
    name: str
    budgets: dict[str, budget_rules.Budget] = field(default_factory=dict)
    recipe: Any = None  # the target's Recipe for this format, when known
    device_class: str | None = None  # cpu | gpu | npu, from the target profile
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def benchmark(
    paths: list[str | Path] | str | Path,
    *,
    data: Any = None,
    reference: Any = None,
    target: str | Path | None = None,
    budgets: list[str] | dict[str, float] | None = None,
    settings: Settings | None = None,
    progress: Progress = SILENT,
    logs: str | Path | None = None,
    devices: list | None = None,
    all_artifacts: bool = False,
    cluster: Any = None,
    cluster_devices: list[str] | None = None,
) -> Report:
    """Benchmark artifacts (a manifest, an output directory, or .tflite/.onnx/.xml files) and judge budgets.

    `data`: an .npz (inputs + optional `labels`), dict of arrays, or Dataset, for accuracy
    and fidelity. `reference`: the source model (defaults to a manifest's source when it
    exists). `budgets`: `KEY=VALUE` strings or a dict; they override the target profile's.
    `logs`: where each worker's own output goes, `bench-<target>-<format>.log` (default: logs/
    beside the manifest, else beside the first file); `progress.verbose` streams it too.
    `devices`: inventory Devices (edgekit.targets.devices) to measure on instead of this host, each
    running the artifacts built for the target it realizes (every artifact with `all_artifacts`).
    `cluster`: a Ray head address or a connected edgekit.cluster.Cluster: each artifact runs on a
    healthy device slot of the cluster realizing its target (`cluster_devices`: only these slots),
    one job per device at a time; an artifact no slot realizes is measured on this host, and said.
    """
    settings = settings or Settings()
    settings.check()
    flag_budgets = _flag_budgets(budgets)
    items, manifest = _collect(paths, target, settings)
    logs_dir = _logs_dir(logs, items, manifest)
    for item in items:
        item.budgets = budget_rules.merge(item.budgets, flag_budgets)
    pairs = None
    if devices:
        from edgekit.benchmarks.remote.bench import plan

        pairs = plan(devices, items, all_artifacts)  # bad input is exit 2 before anything runs
    on_cluster = None
    if cluster is not None:
        from edgekit.cluster import bench as cluster_bench, connect

        cluster = connect(cluster)
        on_cluster = cluster_bench.plan(cluster, items, cluster_devices, all_artifacts, progress)
    source_inputs = _source_inputs(items, manifest)
    dataset = _load_data(data, source_inputs)
    reference_outputs, reference_metrics, reference_note = _reference(reference, manifest, dataset, progress)
    coverage = calibration_coverage(manifest, dataset)
    for warning in coverage:
        progress.info(f"warning: {warning}")

    results = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as scratch:
        data_file = None
        if dataset is not None:
            data_file = Path(scratch) / "data.npz"
            np.savez(data_file, **dataset.arrays)
        measured = (_measurements(items, pairs, settings, data_file, dataset, source_inputs, Path(scratch), progress,
                                  logs_dir)
                    if on_cluster is None else
                    _cluster_measurements(cluster, on_cluster, items, settings, data_file, dataset, source_inputs,
                                          Path(scratch), progress))
        for item, measurement, outputs_file in measured:
            if coverage and (measurement.precision or "").startswith("int"):
                measurement.notes += coverage
            _score(measurement, outputs_file, dataset, reference_outputs, reference_metrics)
            _check_placement(item, measurement)
            verdicts = [budget_rules.judge(b, measurement) for b in item.budgets.values()]
            results.append(Result(measurement, verdicts))
    settings_dict = {**settings.__dict__, "data": getattr(dataset, "origin", None),
                     "samples": dataset.samples if dataset is not None else 0,
                     "reference": reference_note or (str(reference) if reference else None)}
    from edgekit.targets.hardware import host_facts

    return Report(results, host_facts(), settings_dict, _created(), edgekit_version())


def _logs_dir(logs, items: list[_Item], manifest: Manifest | None) -> Path:
    if logs is not None:
        folder = Path(logs)
    elif manifest is not None and manifest.path is not None:
        folder = manifest.path.parent / "logs"
    else:
        folder = items[0].artifact.path.parent / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"log directory {folder} is not writable: {exc.strerror}; pass --logs DIR") from None
    return folder
def _measurements(items, pairs, settings, data_file, dataset, source_inputs, scratch: Path, progress, logs_dir: Path):
    """(item, Measurement, outputs.npz) on this host, or on each device of `pairs`."""
    if pairs is None:
        for index, item in enumerate(items):
            progress.info(f"benchmarking {item.name} ...")
            log = logs_dir / f"bench-{item.name.replace('/', '-')}.log"
            measurement = _measure(item, settings, data_file, source_inputs, scratch / str(index), log, progress.verbose)
            yield item, measurement, scratch / str(index) / "outputs.npz"
        return
    from edgekit.benchmarks.remote.bench import run_on_device

    for device, chosen in pairs:
        done = run_on_device(device, chosen, settings, dataset, source_inputs, scratch, progress)
        for item, (measurement, outputs_file) in zip(chosen, done, strict=True):
            yield item, measurement, outputs_file


def _cluster_measurements(cluster, on_cluster, items, settings, data_file, dataset, source_inputs, scratch: Path,
                          progress):
    """As _measurements, with the device jobs on the cluster; results in item order, as a local run."""
    from edgekit.cluster import bench as cluster_bench

    done = cluster_bench.run(cluster, on_cluster, items, settings, dataset, source_inputs, scratch, progress)
    for index, item in enumerate(items):
        if index in done:
            measurement, outputs_file = done[index]
        else:
            progress.info(f"benchmarking {item.name} ...")
            measurement = _measure(item, settings, data_file, source_inputs, scratch / str(index))
            outputs_file = scratch / str(index) / "outputs.npz"
        yield item, measurement, outputs_file


def _flag_budgets(budgets) -> dict[str, budget_rules.Budget]:
    if not budgets:
        return {}
    if isinstance(budgets, dict):
        parsed = [budget_rules.make_budget(k, v, "budgets") for k, v in budgets.items()]
    else:
        parsed = [budget_rules.parse_budget(text) for text in budgets]
    return {b.key: b for b in parsed}


def _collect(paths, target, settings: Settings) -> tuple[list[_Item], Manifest | None]:
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise InputError("no artifact given; pass a manifest.json, an output directory or model files")
    profile = _load_profile(target) if target else None
    items: list[_Item] = []
    manifest = None
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and (path / "manifest.json").exists():
            path = path / "manifest.json"
        if path.name == "manifest.json" or path.suffix == ".json":
            manifest = Manifest.read(path)
            items += [_from_manifest(a, profile, settings) for a in manifest.artifacts]
        elif path.suffix.lower() in SUFFIX_FORMAT:
            items.append(_from_file(path, profile, settings))
        elif path.is_dir():
            raise InputError(f"{path}: directory has no manifest.json; pass the output directory of `edgekit convert`")
        elif not path.exists():
            raise InputError(f"not found: {path}")
        else:
            raise InputError(f"{path}: not an artifact (accepted: manifest.json, an output directory, .tflite, .onnx, .xml)")
    names = [item.name for item in items]
    for item in items:  # same file name in several folders (dist/cpu/m.onnx, dist/gpu/m.onnx): name the folder too
        if names.count(item.name) > 1 and not item.artifact.target:
            item.name = f"{item.artifact.path.parent.name}/{item.name}"
    return items, manifest


def _load_profile(name):
    from edgekit.targets.loader import load_target

    return load_target(name)


def _profile_budgets(profile, where: str) -> dict[str, budget_rules.Budget]:
    return {k: budget_rules.make_budget(k, v, f"{where}: budgets") for k, v in profile.budgets.items()}


def _from_manifest(artifact: Artifact, profile, settings: Settings) -> _Item:
    item = _Item(artifact, f"{artifact.target}/{artifact.format}")
    profile_ref = profile
    if profile_ref is None:
        try:
            profile_ref = _load_profile(artifact.profile or artifact.target)
        except EdgekitError as exc:
            item.notes.append(f"no default budgets: target profile not loadable ({exc})")
    if profile_ref is not None:
        item.budgets = _profile_budgets(profile_ref, profile_ref.source)
        item.recipe = profile_ref.formats.get(_format_enum(artifact.format))
        item.device_class = profile_ref.device_class.value
    missing = [p for p in artifact.files() if not p.exists()]
    if missing:
        item.error = f"file missing: {missing[0]} (listed in the manifest)"
    else:
        expected = artifact.sha256
        artifact.fingerprint()
        if expected and artifact.sha256 != expected:
            item.error = f"sha256 of {artifact.path.name} does not match the manifest: the file changed after conversion"
    _check_backend(item, settings)
    return item


def _from_file(path: Path, profile, settings: Settings) -> _Item:
    fmt = SUFFIX_FORMAT[path.suffix.lower()]
    runtime = FORMAT_RUNTIME[fmt]
    artifact = Artifact(target=profile.name if profile else "", format=fmt, precision="", path=path.resolve(),
                        runtime=runtime, device="CPU", inputs=[], outputs=[], tools={}, seconds=0.0)
    item = _Item(artifact, path.name)
    if profile is not None:
        item.budgets = _profile_budgets(profile, profile.source)
        item.recipe = profile.formats.get(_format_enum(fmt))
        item.device_class = profile.device_class.value
    if not path.exists():
        item.error = f"file not found: {path}"
        return item
    try:
        artifact.fingerprint()
        _read_specs(artifact)
    except (EdgekitError, OSError) as exc:
        item.error = str(exc)
    _check_backend(item, settings)
    return item


def _read_specs(artifact: Artifact) -> None:
    """A bare file's I/O specs, read by its runtime (in this process: nothing is timed here)."""
    from edgekit.benchmarks.registry import backend_class

    backend = backend_class(artifact.runtime)(artifact.path)
    backend.load()
    try:
        artifact.inputs, artifact.outputs = backend.inputs(), backend.outputs()
    finally:
        backend.close()
    for spec in artifact.inputs:
        if spec.dtype in ("int8", "uint8") and spec.quantization is None:
            raise InputError(f"{artifact.path}: input '{spec.name}' is {spec.dtype} with no scale/zero point in the "
                             "file; benchmark it through the manifest.json that `edgekit convert` wrote")


def _format_enum(fmt: str):
    from edgekit.targets.schema import Format

    return Format(fmt)


def _check_backend(item: _Item, settings: Settings) -> None:
    wanted = settings.backend
    if wanted and wanted != FORMAT_RUNTIME[item.artifact.format]:
        item.error = item.error or f"backend {wanted} cannot run a {item.artifact.format} file (it runs on {FORMAT_RUNTIME[item.artifact.format]})"


def _source_inputs(items: list[_Item], manifest: Manifest | None) -> list[TensorSpec]:
    if manifest is not None:
        return [TensorSpec.from_dict(t) for t in manifest.source["inputs"]]
    for item in items:
        if item.artifact.inputs:
            return [TensorSpec(s.name, s.shape, "float32" if s.quantization else s.dtype) for s in item.artifact.inputs]
    return []


def _load_data(data, source_inputs: list[TensorSpec]) -> Dataset | None:
    if data is None:
        return None
    if not source_inputs:
        raise InputError("cannot bind --data: no artifact could be read to learn the model's inputs")
    from edgekit.data import load_dataset

    return load_dataset(data, source_inputs)


def _reference(reference, manifest: Manifest | None, dataset: Dataset | None, progress: Progress):
    """Reference outputs and metrics on the data, from --reference or the manifest's source."""
    note = None
    if reference is None and manifest is not None and manifest.source.get("path"):
        candidate = Path(manifest.source["path"])
        if candidate.exists():
            reference, note = candidate, f"reference: {candidate} (the manifest's source)"
    if reference is None or dataset is None:
        return None, {}, note
    from edgekit.converters.source import load_source
    from edgekit.converters.verify import reference_outputs

    progress.info(f"running the reference model {reference} on {dataset.samples} samples")
    source = load_source(reference)
    outputs = reference_outputs(source.run, dataset)
    metrics = task_metrics(outputs[0], dataset.labels)[0] if dataset.labels is not None else {}
    return outputs, metrics, note


COVERAGE_MARGIN = 0.05  # of the calibrated range's width: beyond it, int8 clipping is material


def calibration_coverage(manifest: Manifest | None, dataset: Dataset | None) -> list[str]:
    """Warnings for evaluation inputs outside the calibrated ranges: int8 artifacts clip there."""
    if manifest is None or dataset is None or not manifest.calibration:
        return []
    warnings = []
    for name, (low, high) in manifest.calibration.get("ranges", {}).items():
        if name not in dataset.arrays:
            continue
        values = dataset.arrays[name]
        margin = COVERAGE_MARGIN * max(high - low, 1e-12)
        outside = float(np.mean((values < low - margin) | (values > high + margin)))
        if outside > 0:
            warnings.append(
                f"input '{name}': {outside:.1%} of evaluation values fall outside the calibrated range "
                f"[{low:.4g}, {high:.4g}] (seen [{float(values.min()):.4g}, {float(values.max()):.4g}]); "
                "int8 artifacts clip there: recalibrate with data that covers deployment inputs"
            )
    return warnings


def _measure(item: _Item, settings: Settings, data_file, source_inputs, scratch: Path, log: Path,
             verbose: bool = False) -> Measurement:
    artifact = item.artifact
    recipe = item.recipe
    measurement = Measurement(
        name=item.name, path=str(artifact.path), format=artifact.format, runtime=artifact.runtime,
        target=artifact.target or None, precision=artifact.precision or None,
        size_mb=artifact.bytes / 1e6 if artifact.bytes else None, notes=list(item.notes),
    )
    if item.error:
        measurement.error = item.error
        return measurement
    device, providers = _placement(artifact, recipe, settings)
    measurement.device_requested = device if artifact.runtime != "onnxruntime" else ",".join(providers)
    scratch.mkdir(parents=True)
    job = {
        "path": str(artifact.path), "runtime": artifact.runtime, "device": device, "providers": providers,
        "threads": settings.threads or (recipe.threads if recipe else None), "precision": artifact.precision or None,
        "batch": settings.batch, "warmup": settings.warmup, "min_runs": settings.min_runs,
        "min_time": settings.min_time, "max_time": settings.max_time, "raw_samples": settings.raw_samples,
        "inputs": [s.to_dict() for s in artifact.inputs], "outputs": [s.to_dict() for s in artifact.outputs],
        "source_inputs": [s.name for s in source_inputs],
        "data": str(data_file) if data_file else None, "outputs_file": str(scratch / "outputs.npz"),
        "result_file": str(scratch / "result.json"),
    }
    job_file = scratch / "job.json"
    job_file.write_text(json.dumps(job))
    measurement.log = str(log)
    outcome = _run_worker(job_file, settings.timeout, log, verbose)
    if "error" in outcome:
        measurement.error = outcome["error"]
        return measurement
    measurement.backend = outcome.get("backend", {})
    measurement.skipped.update(outcome.get("skipped", {}))
    measurement.notes += outcome.get("notes", [])
    for key in ("load_ms", "first_inference_ms", "peak_memory_mb", "model_memory_mb"):
        setattr(measurement, key, outcome.get(key))
    if outcome.get("latency"):
        measurement.latency = LatencyStats(**outcome["latency"])
    if outcome.get("runtime_latency"):
        measurement.runtime_latency = LatencyStats(**outcome["runtime_latency"])
    return measurement


def _placement(artifact: Artifact, recipe, settings: Settings) -> tuple[str, list[str]]:
    device = settings.device or (recipe.device if recipe else artifact.device or "CPU")
    providers = list(recipe.providers) if recipe else ["CPUExecutionProvider"]
    if artifact.runtime == "onnxruntime" and settings.device:
        name = settings.device if settings.device.endswith("ExecutionProvider") else f"{settings.device.upper()}ExecutionProvider"
        providers = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
    return device, providers


def _run_worker(job_file: Path, timeout: float, log: Path, verbose: bool = False) -> dict[str, Any]:
    from edgekit.toollog import popen_logged, quiet_environment, tail

    command = [sys.executable, "-m", "edgekit.benchmarks.worker", str(job_file)]
    log.write_bytes(b"")  # this run's output replaces the last run's
    process, copier = popen_logged(command, log, tee=verbose, env=quiet_environment())
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return {"error": f"timed out after {timeout:g} s (the runtime hung or is too slow; raise the timeout); log: {log}"}
    finally:
        if copier is not None:
            copier.join(timeout=10)
    result_file = Path(json.loads(job_file.read_text())["result_file"])
    if code != 0 or not result_file.exists():
        return {"error": _crash_reason(code, tail(log, 1), log)}
    return json.loads(result_file.read_text())


def _crash_reason(code: int, last: list[str], log: Path) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = "killed: out of memory?" if name == "SIGKILL" else f"crashed with {name}"
    else:
        what = f"exited with status {code}"
    return f"the runtime {what}" + (f": {last[-1][:300]}" if last else "") + f" (log: {log})"


def _check_placement(item: _Item, measurement: Measurement) -> None:
    """Which ops run on the target's accelerator (for min_accelerated_ops); checked here, not timed."""
    if measurement.error:
        return
    if item.recipe is None or item.device_class is None:
        measurement.skipped["accelerated_ops"] = "no target profile to check op placement against (pass -t)"
        return
    from edgekit.converters.compat import check_artifact

    try:
        result = check_artifact(item.artifact.path, item.artifact.format, item.recipe, item.device_class)
    except EdgekitError as exc:
        measurement.skipped["accelerated_ops"] = f"op placement check failed: {exc}"
        return
    measurement.compatibility = result.to_dict()
    if result.fraction is None:
        measurement.skipped["accelerated_ops"] = "; ".join(result.notes) or "op placement could not be decided"


def _score(measurement: Measurement, outputs_file: Path, dataset, reference_outputs, reference_metrics) -> None:
    if measurement.error or dataset is None:
        if dataset is None and not measurement.error:
            measurement.skipped.setdefault("accuracy", "no --data given")
        return
    with np.load(outputs_file) as archive:
        outputs = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    if dataset.labels is not None:
        measurement.metrics, measurement.confusion_matrix = task_metrics(outputs[0], dataset.labels)
    else:
        measurement.skipped.setdefault("accuracy", "no labels in --data")
    if reference_outputs is not None:
        measurement.fidelity = fidelity(outputs, reference_outputs)
        measurement.reference_metrics = dict(reference_metrics)
    else:
        measurement.skipped.setdefault("fidelity", "no reference model (pass --reference)")
