"""`edgekit bench --device NAME`: push each artifact to the device, run it there, bring the measurement back.

Per device: one connection; the worker (or the vendor binary) pushed once, content-addressed;
then per artifact: cool down, record the thermal state, push the artifact (skipped when its
sha256 is already there), run it with a timeout that kills the remote process group, pull
the result, record the thermal state again. Inputs are quantized and outputs scored on this
host with the same code as local bench, so only the timed loop runs on the device.
A device that fails costs its own rows; the other devices go on.
"""
from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.benchmarks.measurement import LatencyStats, Measurement
from edgekit.benchmarks.remote import fingerprint
from edgekit.benchmarks.remote.transport import DeviceError, Transport, open_transport
from edgekit.console import Progress
from edgekit.errors import InputError

HERE = Path(__file__).resolve().parent
WORKER_FILES = (HERE / "device_worker.py", HERE.parent / "timedloop.py")


def realizes(device, artifact) -> bool:
    """Whether an artifact was built for the target the device realizes."""
    return device.target in {artifact.target, getattr(artifact, "profile", None)}


def plan(devices, items, all_artifacts: bool) -> list[tuple[Any, list]]:
    """(device, its items) pairs; a device with nothing to run is bad input (exit 2, before anything runs)."""
    pairs = []
    for device in devices:
        formats = device.runner.formats
        chosen = [i for i in items if (all_artifacts or realizes(device, i.artifact)) and i.artifact.format in formats]
        if not chosen:
            targets = sorted({i.artifact.target or "(none)" for i in items})
            raise InputError(f"device '{device.name}' realizes target '{device.target}' and runs "
                             f"{', '.join(formats)}; no such artifact here (targets: {', '.join(targets)}); "
                             "pass --all to run every artifact there")
        pairs.append((device, chosen))
    return pairs


def run_on_device(device, items, settings, dataset, source_inputs, scratch: Path,
                  progress: Progress) -> list[tuple[Measurement, Path]]:
    """(Measurement, its outputs.npz for scoring) per item, errors included, in order."""
    measurements = [_blank(item, device) for item in items]
    folders = [scratch / f"{device.name}-{index}" for index in range(len(items))]
    result = list(zip(measurements, [folder / "outputs.npz" for folder in folders]))
    try:
        transport = open_transport(device)
    except DeviceError as exc:
        for m in measurements:
            m.error = f"device {device.name}: {exc}"
        return result
    with transport:
        try:
            context = _prepare(transport, device)
        except DeviceError as exc:
            for m in measurements:
                m.error = f"device {device.name}: {exc}"
            return result
        for index, (item, measurement) in enumerate(zip(items, measurements)):
            if item.error:
                measurement.error = item.error
                continue
            progress.info(f"benchmarking {item.name} on {device.name} ...")
            try:
                _measure(transport, device, context, item, measurement, settings, dataset, source_inputs, folders[index])
            except DeviceError as exc:
                measurement.error = f"device {device.name}: {exc}"
                if not _alive(transport, device):
                    for later in measurements[index + 1:]:
                        later.error = later.error or f"device {device.name}: not run: the link was lost ({exc})"
                    break
    return result


def _blank(item, device) -> Measurement:
    artifact = item.artifact
    return Measurement(
        name=f"{item.name}@{device.name}", path=str(artifact.path), format=artifact.format, runtime=artifact.runtime,
        target=artifact.target or None, precision=artifact.precision or None,
        size_mb=artifact.bytes / 1e6 if artifact.bytes else None, notes=list(item.notes),
        device={"name": device.name, "transport": device.transport.value, "address": device.describe(),
                "target": device.target, "runner": device.runner.value},
    )


def _alive(transport: Transport, device) -> bool:
    try:
        return "ok" in transport.shell("echo ok", 15.0).stdout
    except DeviceError:
        return False


def _prepare(transport: Transport, device) -> dict[str, Any]:
    transport.prepare(device.workdir)
    facts = fingerprint.probe(transport, device.workdir)
    context: dict[str, Any] = {"facts": facts}
    if device.runner.value == "python":
        context["runtimes"] = fingerprint.runtimes(transport, device.python)
        if "numpy" not in context["runtimes"]["packages"]:
            raise DeviceError(f"NumPy is not installed for {device.python} on the device (the worker needs it)")
        folder = transport.push_addressed(list(WORKER_FILES), device.workdir)
        context["worker"] = f"{folder}/device_worker.py"
    else:
        from edgekit.benchmarks.remote.vendor import prepare_binary

        context["binary"] = prepare_binary(transport, device)
    return context


def _measure(transport, device, context, item, measurement, settings, dataset, source_inputs, scratch: Path) -> None:
    artifact = item.artifact
    runtime_found = _runtime_on_device(context, artifact.runtime)
    if device.runner.value == "python" and runtime_found is None:
        from edgekit.benchmarks.remote.fingerprint import RUNTIME_PACKAGES

        wanted = " or ".join(RUNTIME_PACKAGES[artifact.runtime])
        raise DeviceError(f"no {artifact.runtime} runtime for {device.python} on the device: pip install {wanted} there")
    cooldown = _cool_down(transport, device)
    before = fingerprint.probe(transport, device.workdir)
    folder = transport.push_addressed(artifact.files(), device.workdir)
    pushed = transport.last_push_sent
    remote_model = f"{folder}/{artifact.path.name}"
    timeout = min(settings.timeout, device.timeout)
    if device.runner.value == "python":
        outcome = _run_worker(transport, device, context, item, remote_model, settings, dataset, source_inputs,
                              scratch, timeout)
    else:
        from edgekit.benchmarks.remote.vendor import run_binary

        outcome = run_binary(transport, device, context["binary"], item, remote_model, settings, timeout)
    after = fingerprint.probe(transport, device.workdir)
    reasons = fingerprint.throttled(before, after, device.cooldown.max_temperature_c) + cooldown.pop("reasons", [])
    measurement.device.update({
        "fingerprint": _fingerprint(context, artifact.runtime, runtime_found),
        "thermal": {"before": fingerprint.thermal(before), "after": fingerprint.thermal(after), "cooldown": cooldown},
        "throttled": bool(reasons), "throttle_reasons": reasons,
        "artifact_on_device": remote_model, "artifact_pushed": pushed,
    })
    if reasons:
        measurement.notes.append(f"throttled on {device.name}: {'; '.join(reasons)}")
    if "error" in outcome:
        measurement.error = f"device {device.name}: {outcome['error']}"
        return
    measurement.backend = outcome.get("backend", {})
    measurement.skipped.update(outcome.get("skipped", {}))
    measurement.notes += outcome.get("notes", [])
    for key in ("load_ms", "first_inference_ms", "peak_memory_mb", "model_memory_mb"):
        setattr(measurement, key, outcome.get(key))
    if outcome.get("timings_ns"):
        measurement.latency = LatencyStats.from_ns(outcome["timings_ns"], settings.batch, raw=settings.raw_samples)
    elif outcome.get("latency"):
        measurement.latency = LatencyStats(**outcome["latency"])
    if outcome.get("runtime_timings_ns"):
        measurement.runtime_latency = LatencyStats.from_ns(outcome["runtime_timings_ns"], settings.batch)
    if outcome.get("compatibility"):
        measurement.compatibility = outcome["compatibility"]


def _runtime_on_device(context, runtime: str) -> str | None:
    from edgekit.benchmarks.remote.fingerprint import RUNTIME_PACKAGES

    packages = context.get("runtimes", {}).get("packages", {})
    for name in RUNTIME_PACKAGES.get(runtime, ()):
        if name in packages:
            return f"{name} {packages[name]}"
    return None


def _fingerprint(context, runtime: str, runtime_found: str | None) -> dict[str, Any]:
    facts = {k: v for k, v in context["facts"].items() if k not in ("temperatures_c", "frequencies_mhz")}
    facts["runtime"] = runtime_found or context.get("binary", {}).get("describe")
    if "runtimes" in context:
        facts["python"] = context["runtimes"]["python"]
        facts["numpy"] = context["runtimes"]["packages"].get("numpy")
    return facts


def _cool_down(transport, device) -> dict[str, Any]:
    """Wait until every sensor is below max_temperature_c, or for the fixed seconds; what was done."""
    settings = device.cooldown
    waited, started = {}, time.monotonic()
    if settings.seconds:
        time.sleep(settings.seconds)
        waited["fixed_s"] = settings.seconds
    limit = settings.max_temperature_c
    if limit is None:
        return waited
    while True:
        hot = fingerprint.hottest(fingerprint.probe(transport, device.workdir))
        if hot is None:
            waited["note"] = "no temperature sensor: max_temperature_c cannot be waited for; set cooldown.seconds"
            return waited
        if hot < limit:
            waited["waited_s"] = round(time.monotonic() - started, 1)
            return waited
        if time.monotonic() - started > settings.max_wait_s:
            waited["waited_s"] = round(time.monotonic() - started, 1)
            waited["reasons"] = [f"still {hot:.1f} °C after waiting {settings.max_wait_s:g} s (threshold {limit:g} °C)"]
            return waited
        time.sleep(2.0)


def _feeds(item, dataset, source_inputs, batch: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """The first batch and (with data) every sample, already in the artifact's input dtypes."""
    from edgekit import iocast

    inputs = item.artifact.inputs
    if dataset is None:
        first = {s.name: np.zeros((batch, *(d or 1 for d in s.shape[1:])), dtype=s.dtype) for s in inputs}
        return first, None
    every = {spec.name: iocast.to_input(spec, dataset.arrays[src.name])
             for spec, src in zip(inputs, source_inputs, strict=True)}
    return {name: array[:batch] for name, array in every.items()}, every


def _run_worker(transport, device, context, item, remote_model, settings, dataset, source_inputs, scratch: Path,
                timeout: float) -> dict[str, Any]:
    artifact = item.artifact
    scratch.mkdir(parents=True, exist_ok=True)
    first, every = _feeds(item, dataset, source_inputs, settings.batch)
    jobdir = f"{device.workdir}/jobs/{uuid.uuid4().hex}"
    transport.shell(f"mkdir -p {shlex.quote(jobdir)}")
    try:
        np.savez(scratch / "first.npz", **first)
        transport.push(scratch / "first.npz", f"{jobdir}/first.npz")
        if every is not None:
            np.savez(scratch / "data.npz", **every)
            transport.push(scratch / "data.npz", f"{jobdir}/data.npz")
        from edgekit.benchmarks.runner import _placement

        accelerator, providers = _placement(artifact, item.recipe, settings)
        job = {"path": remote_model, "runtime": artifact.runtime, "device": accelerator, "providers": providers,
               "threads": settings.threads or (item.recipe.threads if item.recipe else None),
               "precision": artifact.precision or None, "batch": settings.batch, "warmup": settings.warmup,
               "min_runs": settings.min_runs, "min_time": settings.min_time, "max_time": settings.max_time,
               "input_names": [s.name for s in artifact.inputs], "first": f"{jobdir}/first.npz",
               "data": f"{jobdir}/data.npz" if every is not None else None, "outputs_file": f"{jobdir}/outputs.npz",
               "result_file": f"{jobdir}/result.json"}
        (scratch / "job.json").write_text(json.dumps(job))
        transport.push(scratch / "job.json", f"{jobdir}/job.json")
        done = transport.run_guarded([device.python, context["worker"], f"{jobdir}/job.json"], timeout, device.workdir)
        if done.status != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()
            return {"error": f"the worker exited with status {done.status}" + (f": {tail[-1][:300]}" if tail else "")}
        transport.pull(f"{jobdir}/result.json", scratch / "result.json")
        outcome = json.loads((scratch / "result.json").read_text())
        if every is not None and "error" not in outcome:
            transport.pull(f"{jobdir}/outputs.npz", scratch / "device-outputs.npz")
            _write_outputs(item, scratch / "device-outputs.npz", scratch / "outputs.npz")
        return outcome
    finally:
        try:
            transport.shell(f"rm -rf {shlex.quote(jobdir)}", 30.0)
        except DeviceError:
            pass  # the link is gone; the job folder is the only thing left (no process)


def _write_outputs(item, device_outputs: Path, outputs_file: Path) -> None:
    """The device's raw outputs, dequantized here as local bench does, in the artifact's output order."""
    from edgekit import iocast

    with np.load(device_outputs) as archive:
        arrays = [iocast.from_output(spec, archive[spec.name]) for spec in item.artifact.outputs]
    np.savez(outputs_file, *arrays)

