"""The median latency of one manifest entry on its own runtime, timed by the loop `edgekit bench` uses."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

MAX_SECONDS = 600.0  # a cap only: the loop stops after `runs` inferences


def median_ms(entry: dict, path: str | Path, sample: np.ndarray, threads: int, runs: int, warmup: int = 10) -> float:
    """`entry`: an artifact of manifest.json; `sample`: one float input in the layout its first input takes."""
    from edgekit import iocast
    from edgekit.artifact import TensorSpec
    from edgekit.benchmarks.registry import FORMAT_RUNTIME, backend_class
    from edgekit.benchmarks.timedloop import timed_loop

    backend = backend_class(FORMAT_RUNTIME[entry["format"]])(Path(path), threads=threads, precision=entry["precision"])
    backend.load()
    try:
        spec = TensorSpec.from_dict(entry["inputs"][0])
        feed = {spec.name: iocast.to_input(spec, sample)}
        times_ns = timed_loop(backend.infer, feed, warmup, runs, 0.0, MAX_SECONDS)
    finally:
        backend.close()
    return statistics.median(times_ns) / 1e6
