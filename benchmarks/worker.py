"""One benchmark in its own process: `python -m edgekit.benchmarks.worker JOB.json`.

A crash, hang or out-of-memory in a runtime kills only this process, memory is
measured without the parent's footprint, and thread settings and imports never
leak from one runtime to another. The job and the result are JSON files; model
outputs go to an .npz for the parent to score.
"""
from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Imported before timing the load, so load_ms is the model's cost, not the import's.
RUNTIME_MODULES = {"tflite": "ai_edge_litert.interpreter", "onnxruntime": "onnxruntime", "openvino": "openvino"}


def run(job: dict[str, Any]) -> dict[str, Any]:
    import psutil

    from edgekit import iocast
    from edgekit._deps import disable_telemetry
    from edgekit.artifact import TensorSpec
    from edgekit.benchmarks.base import DeviceUnavailable
    from edgekit.benchmarks.measurement import LatencyStats
    from edgekit.benchmarks.registry import backend_class
    from edgekit.benchmarks.timedloop import timed_loop

    disable_telemetry()
    result: dict[str, Any] = {"skipped": {}, "notes": []}
    process = psutil.Process()
    cls = backend_class(job["runtime"])
    try:
        importlib.import_module(RUNTIME_MODULES[job["runtime"]])
    except ImportError:
        pass  # the backend falls back to another interpreter, or says what to install
    options = dict(threads=job.get("threads"), precision=job.get("precision"))
    rss_before = process.memory_info().rss
    backend = cls(Path(job["path"]), device=job["device"], providers=tuple(job["providers"]), **options)
    on_requested_device = True
    started = time.perf_counter_ns()
    try:
        backend.load()
    except DeviceUnavailable as exc:
        on_requested_device = False
        reason = str(exc)
        for figure in ("latency", "load_ms", "first_inference_ms", "peak_memory_mb", "model_memory_mb"):
            result["skipped"][figure] = reason
        result["notes"].append(f"accuracy and fidelity measured on the CPU: {reason}")
        backend = cls(Path(job["path"]), device="CPU", providers=("CPUExecutionProvider",), **options)
        backend.load()
    load_ns = time.perf_counter_ns() - started
    model_rss = process.memory_info().rss - rss_before
    result["backend"] = backend.describe()

    inputs = [TensorSpec.from_dict(s) for s in job["inputs"]]
    outputs = [TensorSpec.from_dict(s) for s in job["outputs"]]
    data = dict(np.load(job["data"])) if job.get("data") else None
    source_names = job["source_inputs"]
    batch = job["batch"]

    def feed_for(start: int, count: int) -> dict[str, np.ndarray]:
        return {
            spec.name: iocast.to_input(spec, data[src][start : start + count])
            for spec, src in zip(inputs, source_names, strict=True)
        }

    first = feed_for(0, batch) if data is not None else _zeros(inputs, batch)
    started = time.perf_counter_ns()
    backend.infer(first)
    first_ns = time.perf_counter_ns() - started

    if on_requested_device:
        result["load_ms"] = load_ns / 1e6
        result["first_inference_ms"] = first_ns / 1e6
        result["model_memory_mb"] = model_rss / 2**20
        timer = backend.runtime_latency_ns if backend.runtime_timer else None
        runtime_timings: list[int] = []
        timings = timed_loop(backend.infer, first, job["warmup"], job["min_runs"], job["min_time"], job["max_time"],
                             runtime_clock=timer, runtime_timings=runtime_timings)
        result["latency"] = LatencyStats.from_ns(timings, batch, raw=job.get("raw_samples", False)).__dict__
        if runtime_timings:
            result["runtime_latency"] = LatencyStats.from_ns(runtime_timings, batch).__dict__
            result["backend"]["runtime_timer"] = backend.runtime_timer

    if data is not None:
        samples = len(data[source_names[0]])
        produced: list[list[np.ndarray]] = [[] for _ in outputs]
        for start in range(0, samples, batch):
            out = backend.infer(feed_for(start, min(batch, samples - start)))
            for index, spec in enumerate(outputs):
                produced[index].append(iocast.from_output(spec, out[spec.name]))
        np.savez(job["outputs_file"], *[np.concatenate(chunks) for chunks in produced])
    backend.close()
    if on_requested_device:
        result["peak_memory_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started.

    On Linux, getrusage's ru_maxrss survives exec: a worker started by a parent that had
    TensorFlow loaded would report the parent's peak. VmHWM belongs to this process's own
    address space, so it is read first.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _zeros(inputs, batch: int) -> dict[str, np.ndarray]:
    return {s.name: np.zeros((batch, *(d or 1 for d in s.shape[1:])), dtype=s.dtype) for s in inputs}


def main() -> None:
    job_file = Path(sys.argv[1])
    job = json.loads(job_file.read_text())
    try:
        result = run(job)
    except Exception as exc:  # reported as this artifact's error; the parent keeps going
        text = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {text[0] if text else ''}"}
    Path(job["result_file"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
