"""Benchmark suite (pytest-benchmark): MobileNetV2 conversion time and int8/fp32 latency ratios.

Run with `make perf`, which runs each runtime in its own pytest process.
The issue's bar: each `cpu` int8 artifact runs in at most 0.5x the latency of its
`cpu-fp32` counterpart on its own runtime, at 1 and at 2 threads.
"""
from __future__ import annotations


import pytest


from tests.models import image_like
from tests.perf.latency import median_ms

MAX_INT8_RATIO = 0.5


def _median_ms(entry: dict, threads: int, runs: int = 60, warmup: int = 10) -> float:
    return median_ms(entry, entry["path"], image_like(1, seed=3), threads, runs, warmup)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_cpu_int8_is_at_most_half_fp32_latency(benchmark, mobilenet_artifacts, fmt, threads):
    int8 = mobilenet_artifacts[("cpu", fmt)]
    fp32 = mobilenet_artifacts[("cpu-fp32", fmt)]
    fp32_ms = _median_ms(fp32, threads)
    int8_ms = benchmark.pedantic(_median_ms, args=(int8, threads), rounds=1, iterations=1)
    ratio = int8_ms / fp32_ms
    benchmark.extra_info.update(fp32_ms=round(fp32_ms, 3), int8_ms=round(int8_ms, 3), ratio=round(ratio, 3),
                                int8_precision=int8["precision"])
    print(f"\n{fmt} {threads} thr: fp32 {fp32_ms:.2f} ms, {int8['precision']} {int8_ms:.2f} ms, ratio {ratio:.2f}")
    assert ratio <= MAX_INT8_RATIO, f"{fmt} at {threads} threads: int8/fp32 = {ratio:.2f}"


@pytest.mark.parametrize(
    "target, fmt",
    [(t, f) for t in ("cpu-fp32", "gpu", "cpu", "npu") for f in ("tflite", "onnx", "openvino")],
)
def test_conversion_time(benchmark, mobilenet, tmp_path, target, fmt):
    """Seconds to convert one artifact (whole command; the manifest's `seconds` is the converter alone)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "edgekit", "convert", str(mobilenet["model"]), "-t", target, "-f", fmt,
               "-c", str(mobilenet["calibration"]), "--calibration-samples", "100", "-o", str(tmp_path), "-q", "--json", "--no-verify"]

    def run():
        return subprocess.run(command, capture_output=True, text=True)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    artifact = json.loads(result.stdout)["artifacts"][0]
    benchmark.extra_info.update(convert_seconds=artifact["seconds"], precision=artifact["precision"],
                                megabytes=round(artifact["bytes"] / 1e6, 2))
