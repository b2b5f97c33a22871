"""Report writers: one hand-built Report, as `edgekit bench` would produce it, through every writer."""
from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from edgekit import reports
from edgekit.benchmarks.measurement import REPORT_SCHEMA, LatencyStats, Measurement, Report, Result, Verdict

HOSTILE = '<script>alert("x")</script> $a$|b'
GPU_ABSENT = "GPU not present (available: CPU)"


def _latency(median_ms: float, runs: int = 300, seed: int = 0) -> LatencyStats:
    rng = np.random.default_rng(seed)
    timings = median_ms * 1e6 * rng.lognormal(0.0, 0.15, runs)
    timings[:3] *= 4  # a few slow runs, as on any real host
    return LatencyStats.from_ns([int(t) for t in timings])


def make_report(strict: bool = False) -> Report:
    full = Measurement(
        name="cpu/tflite", path="/models/cpu/model_int8.tflite", format="tflite", runtime="tflite",
        target="cpu", precision="int8-full", device_requested="CPU",
        backend={"runtime": "tflite", "interpreter": "ai_edge_litert 2.3.0", "device": "CPU", "delegate": None, "threads": 4},
        size_mb=0.061, load_ms=4.2, first_inference_ms=1.9, latency=_latency(0.42, seed=1),
        peak_memory_mb=141.5, model_memory_mb=2.3, metrics={"accuracy": 0.9722, "f1": 0.9719},
        confusion_matrix=[[50, 1], [2, 47]], fidelity={"cosine": 0.99912, "max_abs_error": 0.031, "top1_agreement": 0.99},
        reference_metrics={"accuracy": 0.9778},
    )
    no_gpu = Measurement(
        name="gpu/openvino", path="/models/gpu/model.xml", format="openvino", runtime="openvino",
        target="gpu", precision="fp16", device_requested="GPU", size_mb=0.12,
        fidelity={"cosine": 0.99997, "max_abs_error": 0.0004, "top1_agreement": 1.0},
        skipped={"latency": GPU_ABSENT, "peak_memory_mb": GPU_ABSENT},
    )
    broken = Measurement(
        name="npu/onnx", path="/models/npu/model.onnx", format="onnx", runtime="onnxruntime",
        target="npu", precision="int8-static", device_requested="QNNExecutionProvider",
        error="Traceback (most recent call last):\n  File 'x'\nRuntimeError: \x1b[31mLoadLibrary failed\x1b[0m: QnnHtp.dll",
    )
    slow = Measurement(
        name="raspberry-pi-5/onnx", path="/models/rpi/model.onnx", format="onnx", runtime="onnxruntime",
        target="raspberry-pi-5", precision="fp32", device_requested="CPUExecutionProvider",
        backend={"runtime": "onnxruntime", "version": "1.32.0", "providers_used": ["CPUExecutionProvider"], "threads": 4},
        size_mb=0.24, load_ms=12.0, first_inference_ms=5.5, latency=_latency(3.2, seed=2),
        peak_memory_mb=188.0, metrics={"accuracy": 0.9778}, fidelity={"cosine": 0.999999, "max_abs_error": 2e-6},
    )
    odd = Measurement(
        name=HOSTILE, path="/tmp/odd.model.xml", format="openvino", runtime="openvino", precision="fp32",
        backend={"runtime": "openvino", "device": "CPU", "inference_precision": "f32", "execution_devices": ["CPU"]},
        size_mb=0.25, latency=_latency(28.0, seed=3), peak_memory_mb=float("nan"), metrics={"accuracy": 0.9611},
        notes=["inference precision f32 (the CPU default would be bf16)"],
    )
    p90 = slow.latency.p90_ms
    results = [
        Result(full, [Verdict("latency_p90_ms", 5.0, full.latency.p90_ms, "pass"),
                      Verdict("max_accuracy_drop", 0.01, full.value("accuracy_drop"), "pass")]),
        Result(no_gpu, [Verdict("latency_p90_ms", 2.0, None, "not measured", GPU_ABSENT),
                        Verdict("min_cosine", 0.999, 0.99997, "pass")]),
        Result(broken, [Verdict("latency_p90_ms", 2.0, None, "not measured", "benchmark failed")]),
        Result(slow, [Verdict("latency_p90_ms", 1.0, p90, "fail", f"measured {p90:.4g} > limit 1"),
                      Verdict("peak_memory_mb", 256.0, 188.0, "pass")]),
        Result(odd, []),
    ]
    return Report(
        results=results,
        host={"cpu": {"model": "AMD EPYC 7763", "architecture": "x86_64", "logical_cores": 16, "physical_cores": 8,
                      "features": ["AVX2", "FMA", "AVX-512 VNNI"], "memory_gb": 31.3},
              "os": "Linux 6.8", "python": "3.11.7", "runtimes": {"onnxruntime": "1.32.0", "openvino": "2026.4.1"}},
        settings={"warmup": 10, "min_runs": 100, "min_time": 1.0, "max_time": 60.0, "threads": 4, "batch": 1,
                  "backend": None, "device": None, "strict": strict, "timeout": 600.0, "data": "eval.npz", "samples": 100,
                  "reference": "model.keras"},
        created="2025-05-01T12:00:00+00:00",
        edgekit_version="0.1.0",
    )


@pytest.fixture(scope="module")
def report() -> Report:
    return make_report()


def test_json_round_trips_with_schema(report, tmp_path):
    path = reports.write_json(report, tmp_path / "out" / "report.json")
    data = json.loads(path.read_text())
    assert data["schema"] == REPORT_SCHEMA and data["passed"] is False
    assert [r["measurement"]["name"] for r in data["results"]] == [r.measurement.name for r in report.results]
    odd = data["results"][4]["measurement"]
    assert odd["peak_memory_mb"] is None  # NaN is not JSON: it becomes null
    expected = report.to_dict()
    expected["results"][4]["measurement"]["peak_memory_mb"] = None
    assert data == expected
    assert not list(tmp_path.glob("out/.*.tmp"))


def test_markdown_has_a_row_per_artifact_and_lists_failures(report, tmp_path):
    text = reports.write_markdown(report, tmp_path / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(report.results)  # header + one per artifact
    slow = next(r for r in rows if r.startswith("| raspberry-pi-5/onnx "))
    assert "❌ fail" in slow and "onnxruntime · CPU" in slow and "acc 97.78%" in slow
    gpu = next(r for r in rows if r.startswith("| gpu/openvino "))
    assert "⚠️ not measured" in gpu and "cos 0.99997" in gpu and "nan" not in gpu.lower()
    assert "⚠️ error" in next(r for r in rows if r.startswith("| npu/onnx "))
    p90 = report.results[3].measurement.latency.p90_ms
    assert f"- raspberry-pi-5/onnx: latency_p90_ms: measured {p90:.6g} > limit 1.0" in text
    assert f"- gpu/openvino: latency, peak_memory_mb: {GPU_ABSENT} (budget latency_p90_ms not judged)" in text
    assert "- npu/onnx: RuntimeError:" in text
    assert "AMD EPYC 7763 (x86_64, 8 cores, 31.3 GB) · Linux 6.8 · Python 3.11.7 · onnxruntime 1.32.0" in text
    assert "<script>" not in text
    hostile = next(r for r in rows if "script" in r)
    assert hostile.count(" | ") == len(reports.TABLE_COLUMNS) - 1  # its pipe is escaped, not a new cell


def test_junit_counts_names_and_messages(report, tmp_path):
    top = ET.parse(reports.write_junit(report, tmp_path / "junit.xml")).getroot()
    assert top.tag == "testsuites" and len(top) == 1
    root = top.find("testsuite")
    assert root.get("name") == "edgekit.bench"
    cases = root.findall("testcase")
    # cpu/tflite 2, gpu/openvino 2, npu/onnx 1 (error), raspberry-pi-5/onnx 2, odd 1 (no budgets)
    assert len(cases) == 8
    assert {k: int(root.get(k)) for k in ("tests", "failures", "errors", "skipped")} == dict(tests=8, failures=1, errors=1, skipped=1)
    assert float(root.get("time")) > 0
    by = {(c.get("classname"), c.get("name")): c for c in cases}
    failure = by[("edgekit.raspberry-pi-5.onnx", "latency_p90_ms")].find("failure")
    assert re.fullmatch(r"latency_p90_ms: measured \d+\.\d+ > limit 1\.0", failure.get("message"))
    skipped = by[("edgekit.gpu.openvino", "latency_p90_ms")].find("skipped")
    assert GPU_ABSENT in skipped.get("message")
    error = by[("edgekit.npu.onnx", "benchmark")].find("error")
    assert "LoadLibrary failed" in error.get("message") and "\x1b" not in error.text
    assert ("edgekit.odd_model_xml.openvino", "benchmark") in by  # a file, not a target: dots are not packages
    assert by[("edgekit.cpu.tflite", "max_accuracy_drop")].find("*") is None  # passed


def test_junit_strict_turns_not_measured_into_failure(tmp_path):
    suite = ET.parse(reports.write_junit(make_report(strict=True), tmp_path / "junit.xml")).getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("2", "0", "1")


def test_html_is_self_contained_with_plots_and_escaped(report, tmp_path):
    text = reports.write_html(report, tmp_path / "report.html").read_text()
    assert text.count("<svg") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text, re.I)
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "raspberry-pi-5/onnx" in text and "not measured: GPU not present" in text and "FAILED" in text
    assert "AMD EPYC 7763" in text and "AVX-512 VNNI" in text and "min_runs" in text
    assert "nan" not in re.sub(r"<svg.*?</svg>", "", text, flags=re.S).lower()
    assert len(text) < 400_000


def test_html_without_any_latency_still_renders(tmp_path):
    m = Measurement(name="cpu/onnx", path="m.onnx", format="onnx", runtime="onnxruntime", error="boom")
    report = Report([Result(m)], host={}, settings={}, created="now", edgekit_version="0.1.0")
    text = reports.write_html(report, tmp_path / "r.html").read_text()
    assert "no latency was measured" in text and "No artifact has both latency" in text
    empty = Report([], host={}, settings={}, created="now", edgekit_version="0.1.0")
    assert "Nothing was benchmarked" in reports.write_html(empty, tmp_path / "e.html").read_text()
    assert "no artifacts" in reports.markdown(empty)


def test_console_table(report):
    from rich.console import Console

    console = Console(record=True, width=200)
    reports.console_table(report, console)
    text = console.export_text()
    assert all(name in text for name in ("cpu", "raspberry-pi-5", "odd.model.xml", "gpu"))
    assert "FAIL" in text and "ERROR" in text and "NOT MEASURED" in text and "FAILED" in text
    assert f"not measured: gpu/openvino: latency, peak_memory_mb: {GPU_ABSENT}" in text
    assert "nan" not in text.lower()


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (float("nan"), "—"), (float("inf"), "—"), (3.2, "3.20"), (0.00412, "0.00412"), (1534.2, "1534"), (0, "0")],
)
def test_missing_figures_never_print_as_numbers(value, text):
    assert reports.fmt_num(value) == text


def test_budget_values_read_as_written():
    assert reports.fmt_value(1.0) == "1.0" and reports.fmt_value(0.99987) == "0.99987"
    assert reports.fmt_value(None) == "not measured" and reports.fmt_value(math.nan) == "not measured"


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, edgekit.reports; print('matplotlib' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
