"""Integrity of the numbers: `edgekit bench` against a bare loop and the runtimes' own tools.

On a model of about 1 ms (MobileNetV2 at 128x128, fp32, one thread), the p50 that
`edgekit bench` reports must be within 3% of a bare loop over the runtime's own API in
the same conditions. The ratios to OpenVINO's `benchmark_app` and LiteRT's
`litert-benchmark` are recorded (extra_info, printed) for the closing note.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

RUNS, WARMUP, REPEATS = 500, 50, 3

BARE_LOOP = """
import sys, time, numpy as np
path, fmt, runs, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
if fmt == "tflite":
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1); it.allocate_tensors()
    i = it.get_input_details()[0]["index"]
    def run():
        it.set_tensor(i, x); it.invoke()
elif fmt == "onnx":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    def run():
        s.run(None, feed)
else:
    import openvino as ov
    c = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                                               "INFERENCE_PRECISION_HINT": "f32"})
    r = c.create_infer_request()
    def run():
        r.infer([x])
for _ in range(warmup):
    run()
t = []
for _ in range(runs):
    a = time.perf_counter_ns(); run(); t.append(time.perf_counter_ns() - a)
print(np.median(t) / 1e6)
"""


@pytest.fixture(scope="module")
def small_mobilenet(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("mnv2_128")
    script = "from pathlib import Path; import sys; from tests.models import build_mobilenet; build_mobilenet(Path(sys.argv[1]), size=128, calibration=8)"
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True, cwd=Path(__file__).parents[2])
    out = folder / "dist"
    result = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(folder / "mobilenet_v2.keras"), "-t", "cpu-fp32",
                             "-o", str(out), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return {a["format"]: {**a, "path": str(out / a["path"])} for a in json.loads(result.stdout)["artifacts"]}


def _edgekit_p50(path: str) -> float:
    """p50 of `edgekit bench` on a bare artifact file (its precision is read from the file)."""
    command = [sys.executable, "-m", "edgekit", "bench", path, "--threads", "1", "--warmup", str(WARMUP),
               "--min-runs", str(RUNS), "--min-time", "0", "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)["results"][0]["measurement"]["latency"]["p50_ms"]


def _bare_p50(path: str, fmt: str) -> float:
    result = subprocess.run([sys.executable, "-c", BARE_LOOP, path, fmt, str(RUNS), str(WARMUP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.strip().splitlines()[-1])


def _tool_p50(path: str, fmt: str) -> float | None:
    bin_dir = Path(sys.executable).parent
    if fmt == "openvino":
        command = [str(bin_dir / "benchmark_app"), "-m", path, "-d", "CPU", "-hint", "none", "-nthreads", "1", "-nstreams", "1",
                   "-niter", str(RUNS), "-api", "sync", "-infer_precision", "f32", "-shape", "[1,128,128,3]"]
        output = subprocess.run(command, capture_output=True, text=True).stdout
        match = re.search(r"Median:\s+([\d.]+) ms", output)
        return float(match.group(1)) if match else None
    if fmt == "tflite":
        report = Path(path).with_suffix(".litert.json")
        command = [str(bin_dir / "litert-benchmark"), "--model", path, "--num_runs", str(RUNS), "--warmup_runs", str(WARMUP),
                   "--num_threads", "1", "--result_json", str(report)]
        subprocess.run(command, capture_output=True, text=True)
        if not report.exists():
            return None
        data = json.loads(report.read_text())
        for key in ("median_ms", "p50_ms", "inference_median_ms", "latency_median_ms"):
            if key in json.dumps(data):
                return _find(data, key)
        return _find(data, "avg_ms") or _find(data, "mean_ms")
    return None


def _find(data, key):
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and isinstance(v, (int, float)):
                return float(v)
            found = _find(v, key)
            if found is not None:
                return found
    if isinstance(data, list):
        for v in data:
            found = _find(v, key)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_bench_p50_matches_a_bare_loop(benchmark, small_mobilenet, fmt):
    path = small_mobilenet[fmt]["path"]
    ours, bare = [], []
    for _ in range(REPEATS):  # interleaved, so drift on a shared host hits both alike
        ours.append(_edgekit_p50(path))
        bare.append(_bare_p50(path, fmt))
    edgekit_ms, bare_ms = statistics.median(ours), statistics.median(bare)
    tool_ms = benchmark.pedantic(_tool_p50, args=(path, fmt), rounds=1, iterations=1)
    ratio = edgekit_ms / bare_ms
    benchmark.extra_info.update(edgekit_p50_ms=round(edgekit_ms, 4), bare_loop_p50_ms=round(bare_ms, 4),
                                ratio=round(ratio, 4), tool_p50_ms=tool_ms,
                                tool_ratio=round(edgekit_ms / tool_ms, 4) if tool_ms else None)
    print(f"\n{fmt}: edgekit p50 {edgekit_ms:.4f} ms, bare loop {bare_ms:.4f} ms, ratio {ratio:.4f}; "
          f"runtime's own tool {tool_ms} ms" + (f", edgekit/tool {edgekit_ms / tool_ms:.3f}" if tool_ms else ""))
    assert abs(ratio - 1) <= 0.03, f"{fmt}: edgekit {edgekit_ms:.4f} ms vs bare loop {bare_ms:.4f} ms"
