"""Integrity of the numbers: `edgekit bench` against a bare loop and the runtimes' own tools.

On MobileNetV2 at 128x128 (fp32), at 1 and 2 threads, the p50 that `edgekit bench` reports
must be within 0.95-1.05 of the runtime's own benchmark tool: OpenVINO's `benchmark_app`
(`-hint none -nstreams 1 -nireq 1 -nthreads N`, static shape) and LiteRT's
`litert-benchmark`; ONNX Runtime ships no tool in its pip package, so there the reference
is the bare loop over its API. The bare loop is recorded beside the tool for every runtime.
The three measurements of one case are interleaved REPEATS times, so drift on a shared host
hits all alike; the spread of the repeats (max/min of each) is printed as the noise.
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
GOAL = (0.95, 1.05)  # edgekit p50 / the runtime's own tool (or the bare loop)

BARE_LOOP = """
import sys, time, numpy as np
path, fmt, runs, warmup, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
if fmt == "tflite":
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads); it.allocate_tensors()
    i = it.get_input_details()[0]["index"]
    def run():
        it.set_tensor(i, x); it.invoke()
elif fmt == "onnx":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    def run():
        s.run(None, feed)
else:
    import openvino as ov
    core = ov.Core()
    m = core.read_model(path)
    m.reshape({m.inputs[0].get_any_name(): list(x.shape)})  # the shape benchmark_app is given
    c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                      "INFERENCE_PRECISION_HINT": "f32"})
    r = c.create_infer_request()
    r.set_input_tensor(ov.Tensor(x))
    def run():
        r.start_async(); r.wait()
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


def _edgekit_p50(path: str, threads: int) -> float:
    """p50 of `edgekit bench` on a bare artifact file (its precision is read from the file)."""
    command = [sys.executable, "-m", "edgekit", "bench", path, "--threads", str(threads), "--warmup", str(WARMUP),
               "--min-runs", str(RUNS), "--min-time", "0", "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)["results"][0]["measurement"]["latency"]["p50_ms"]


def _bare_p50(path: str, fmt: str, threads: int) -> float:
    result = subprocess.run([sys.executable, "-c", BARE_LOOP, path, fmt, str(RUNS), str(WARMUP), str(threads)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.strip().splitlines()[-1])


def _tool_p50(path: str, fmt: str, threads: int) -> float | None:
    """The runtime's own tool, from the pip package; None where the package ships none (ONNX Runtime)."""
    bin_dir = Path(sys.executable).parent
    if fmt == "openvino":
        command = [str(bin_dir / "benchmark_app"), "-m", path, "-d", "CPU", "-hint", "none", "-nthreads", str(threads),
                   "-nstreams", "1", "-nireq", "1", "-niter", str(RUNS), "-infer_precision", "f32", "-shape", "[1,128,128,3]"]
        output = subprocess.run(command, capture_output=True, text=True).stdout
        match = re.search(r"Median:\s+([\d.]+) ms", output)
        assert match, output[-2000:]
        return float(match.group(1))
    if fmt == "tflite":
        report = Path(path).with_name(f"litert-{threads}.json")
        command = [str(bin_dir / "litert-benchmark"), "--model", path, "--num_runs", str(RUNS), "--warmup_runs", str(WARMUP),
                   "--num_threads", str(threads), "--result_json", str(report)]
        result = subprocess.run(command, capture_output=True, text=True)
        assert report.exists(), result.stderr[-2000:]
        return float(json.loads(report.read_text())["latency"]["median_ms"])
    return None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_bench_p50_matches_the_runtimes_own_tool(benchmark, small_mobilenet, fmt, threads):
    path = small_mobilenet[fmt]["path"]
    ours, bare, tool = [], [], []
    for _ in range(REPEATS):  # interleaved, so drift on a shared host hits all three alike
        ours.append(_edgekit_p50(path, threads))
        bare.append(_bare_p50(path, fmt, threads))
        tool_ms = _tool_p50(path, fmt, threads)
        if tool_ms is not None:
            tool.append(tool_ms)
    edgekit_ms = benchmark.pedantic(lambda: statistics.median(ours), rounds=1, iterations=1)
    bare_ms = statistics.median(bare)
    tool_ms = statistics.median(tool) if tool else None
    reference, reference_ms = ("tool", tool_ms) if tool_ms else ("bare loop", bare_ms)
    ratio = edgekit_ms / reference_ms
    noise = {name: round(max(v) / min(v), 3) for name, v in (("edgekit", ours), ("bare", bare), ("tool", tool)) if v}
    benchmark.extra_info.update(threads=threads, edgekit_p50_ms=round(edgekit_ms, 4), bare_loop_p50_ms=round(bare_ms, 4),
                                tool_p50_ms=tool_ms, reference=reference, ratio=round(ratio, 4),
                                bare_ratio=round(edgekit_ms / bare_ms, 4), repeat_spread=noise)
    print(f"\n{fmt} {threads} thr: edgekit p50 {edgekit_ms:.4f} ms, bare loop {bare_ms:.4f} ms, tool {tool_ms} ms; "
          f"edgekit/{reference} {ratio:.3f}, edgekit/bare {edgekit_ms / bare_ms:.3f}; repeat spread (max/min) {noise}")
    assert GOAL[0] <= ratio <= GOAL[1], f"{fmt} at {threads} threads: edgekit {edgekit_ms:.4f} ms vs {reference} {reference_ms:.4f} ms"
